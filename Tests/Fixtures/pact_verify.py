#!/usr/bin/env python3
"""A Pact provider verifier, on pact-python 4.x (`pact.Verifier`, i.e. the Rust verifier embedded in pact_ffi).

Usage:
  python3 Tests/Fixtures/pact_verify.py --provider user-service --url http://127.0.0.1:PORT
      [--states-url http://127.0.0.1:PORT2/provider-states] [--teardown]
      [--header "Authorization: Bearer xyz"]... [--timeout-ms 5000] [--verbose] PACT.json...

Only pact files whose provider.name equals --provider are verified (others are skipped with a note on stderr). Each
interaction's request is replayed against --url (a path in --url is prefixed to every request path) and the
response is checked against the pact's expectations and matching rules.

Provider states: with --states-url, before each interaction the verifier POSTs, with Content-Type application/json,
  {"action": "setup", "params": {...}, "state": "<name>"}
once per provider state of the interaction (params is {} when the state has none). An interaction without provider
states still gets one call with "state": "" (and "params": {}) -- the endpoint must answer it (a no-op is fine).
A non-2xx answer fails that interaction. Teardown calls ("action": "teardown", same state and params, sent after the
interaction) are sent only with --teardown; by default they are not sent. Without --states-url, provider states are
ignored. The --header values are also sent on the state-change requests.

--header "Name: value" (repeatable) sets that header on every replayed request, replacing the pact's value.

Output (stdout): per failing interaction one line
  CONTRACT BROKEN: consumer <consumer> expects "<description>" [given <states>]: <mismatch>[ | <mismatch>...]
then `VERIFIED <n> interactions from <consumer>[, <consumer>...]` (n = interactions replayed, passed or not).
Exit 0 when every interaction passed, 1 otherwise (also when no given pact file is for --provider), 2 on bad
arguments or unreadable pact files. The verifier's own report goes to stderr.
"""

import argparse
import contextlib
import json
import logging
import os
import sys
from urllib.parse import urlsplit

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # the Rust core otherwise sends anonymous usage metrics


def die(message, code=2):
    print(f"pact_verify: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def one_line(text):
    return " ".join(str(text).split())


@contextlib.contextmanager
def stdout_to_stderr():
    """The Rust verifier prints its report on fd 1; keep our stdout for the machine-readable lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def describe_mismatch(m):
    kind = m.get("type", "")
    text = one_line(m.get("mismatch") or m.get("message") or "")
    if kind == "BodyMismatch":
        return f"body {m.get('path', '$')}: {text}"
    if kind == "StatusMismatch":
        return f"status: expected {m.get('expected')} but was {m.get('actual')}"
    if kind == "HeaderMismatch":
        return text if text.startswith("Mismatch with header") else f"header {m.get('key')!r}: {text}"
    if kind == "BodyTypeMismatch":
        return f"body content type: {text or 'expected %s, got %s' % (m.get('expected'), m.get('actual'))}"
    if text:
        return f"{kind}: {text}" if kind else text
    return one_line(json.dumps(m, sort_keys=True))


def describe_result_mismatch(mismatch):
    """The `mismatch` of a failed interaction result: {"type": "mismatches", "mismatches": [...]} or an error."""
    if not isinstance(mismatch, dict):
        return one_line(mismatch) if mismatch else "failed (no details)"
    if isinstance(mismatch.get("mismatches"), list) and mismatch["mismatches"]:
        return " | ".join(describe_mismatch(m) for m in mismatch["mismatches"])
    if mismatch.get("message"):
        return one_line(mismatch["message"])
    return one_line(json.dumps(mismatch, sort_keys=True))


def main():
    parser = argparse.ArgumentParser(description="Verify Pact files against a running provider.")
    parser.add_argument("--provider", required=True, help="provider name; only pacts for it are verified")
    parser.add_argument("--url", required=True, help="base URL of the running provider")
    parser.add_argument("--states-url", help="provider-state change URL (JSON POST)")
    parser.add_argument("--teardown", action="store_true", help="also POST teardown state changes (default: no)")
    parser.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                        help="header set on every request (replaces the pact's value); repeatable")
    parser.add_argument("--timeout-ms", type=int, default=5000, help="per-request timeout (default 5000)")
    parser.add_argument("--verbose", action="store_true", help="log the Pact core at DEBUG level to stderr")
    parser.add_argument("pacts", nargs="+", metavar="PACT.json")
    args = parser.parse_args()

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pact").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    logging.getLogger("pact.ffi").setLevel(logging.DEBUG if args.verbose else logging.WARNING)

    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        die(f"--url must be an http(s) URL, got {args.url!r}")
    headers = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            die(f"--header must look like 'Name: value', got {h!r}")
        headers.append((name.strip(), value.strip()))

    selected, consumers = [], []
    for path in args.pacts:
        try:
            with open(path, encoding="utf-8") as f:
                pact = json.load(f)
            provider = pact["provider"]["name"]
            consumer = pact["consumer"]["name"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            die(f"cannot read pact file {path}: {e}")
        if provider != args.provider:
            print(f"pact_verify: skipping {path}: its provider is {provider!r}, not {args.provider!r}",
                  file=sys.stderr)
            continue
        selected.append(os.path.abspath(path))
        if consumer not in consumers:
            consumers.append(consumer)
    if not selected:
        print(f"NO PACTS: none of the given pact files is for provider {args.provider}")
        print("VERIFIED 0 interactions from (none)", flush=True)
        return 1

    from pact import Verifier

    verifier = Verifier(args.provider, host=url.hostname)
    verifier.add_transport(url=args.url)
    verifier.set_coloured_output(enabled=False)
    verifier.set_request_timeout(args.timeout_ms)
    if args.states_url:
        verifier.state_handler(args.states_url, teardown=args.teardown, body=True)
    for name, value in headers:
        verifier.add_custom_header(name, value)
    for path in selected:
        verifier.add_source(path)

    executed_ok = True
    with stdout_to_stderr():
        try:
            verifier.verify()
        except RuntimeError:
            executed_ok = False  # the core returns non-zero when any interaction fails; details are in results
    results = verifier.results

    interaction_results = results.get("interactionResults") or []
    broken = 0
    for r in interaction_results:
        if r.get("result") == "OK" or r.get("pending"):
            continue
        broken += 1
        states = r.get("providerStates") or []
        given = f" given {', '.join(states)}" if states else ""
        print(f"CONTRACT BROKEN: consumer {r.get('consumer') or '?'} expects \"{r.get('description')}\"{given}: "
              f"{describe_result_mismatch(r.get('mismatch'))}")
    if not executed_ok and broken == 0:
        # A failure not tied to an interaction (e.g. a pact the core could not load).
        errors = results.get("errors") or []
        detail = " | ".join(f"{e.get('interaction')}: {describe_result_mismatch(e.get('mismatch'))}"
                            for e in errors) or "the verifier failed; see stderr"
        print(f"CONTRACT BROKEN: consumer {', '.join(consumers)} expects its pact to verify: {detail}")
        broken = 1
    print(f"VERIFIED {len(interaction_results)} interactions from {', '.join(consumers)}", flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
