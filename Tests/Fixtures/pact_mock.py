#!/usr/bin/env python3
"""A Pact mock provider for consumer contract tests, on pact-python 4.x (the embedded Rust Pact core, pact_ffi).

Usage:
  python3 Tests/Fixtures/pact_mock.py --spec SPEC.json --out-dir DIR [--pact-spec V4|V3] [--verbose]

SPEC.json:
  {"consumer": "order-service", "provider": "user-service", "interactions": [{
     "description": "a request for user 1",                      (unique within the spec)
     "providerStates": [{"name": "user 1 exists", "params": {"id": 1}}],          (optional)
     "request":  {"method": "GET", "path": "/users/1",
                  "query": {"name": ["v1"]},                                      (optional)
                  "headers": {"Authorization": H},                                (optional)
                  "body": B},                                                     (optional)
     "response": {"status": 200, "headers": {...}, "body": B}}]}
  H (a header value) is a string, a list of strings (repeated header), or a Pact integration-JSON matcher such as
  {"pact:matcher:type": "regex", "regex": "^Bearer .+$", "value": "Bearer abc"}. Query values likewise (a string, a
  list of strings, or a matcher). B (a body) is any JSON value and may contain integration-JSON matchers anywhere
  ("type", "regex", "integer", "decimal", "number", "boolean", "datetime"/"date"/"time" with "format",
  "type" with "min"/"max" and an array value = eachLike, ...). A string body is sent as text unless the
  Content-Type header says JSON. The path may also be a matcher. Always give matchers a "value" (an example):
  without one the core generates it, which makes the pact file vary between runs.

Protocol:
  Starts the mock server on 127.0.0.1 on a free port, prints exactly one line `READY <port>` to stdout, then waits
  for SIGTERM (or SIGINT). Then, if every interaction was hit at least once (an interaction may be hit any number of
  times) and there was no mismatching or unexpected request, it writes DIR/<consumer>-<provider>.json (overwriting,
  not merging), prints `OK <absolute path>` and exits 0. Otherwise it prints one line per problem:
    MISSING REQUEST: interaction "<description>" (<METHOD> <path>) was never called
    REQUEST MISMATCH: interaction "<description>" (<METHOD> <path>): <what differed>
    UNEXPECTED REQUEST: <METHOD> <path>[?query] matched no interaction
  then a line `FAILED <n> problem(s); no pact file written`, and exits 1. A bad spec or a failure to start exits 2
  (message on stderr, no READY line). The core's log goes to stderr.
"""

import argparse
import json
import logging
import os
import signal
import sys
from urllib.parse import parse_qsl

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # the Rust core otherwise sends anonymous usage metrics

MATCHER_KEY = "pact:matcher:type"


# Matcher types the Rust core knows (pact_models MatchingRule::create); the core silently copies unknown ones into
# the pact file, so a typo would only show up at verification time. We reject them up front instead.
KNOWN_MATCHERS = {
    "equality", "regex", "type", "include", "integer", "decimal", "real", "number", "boolean", "null",
    "timestamp", "datetime", "date", "time", "min", "max", "minType", "maxType", "minmax",
    "contentType", "content-type", "values", "arrayContains", "array-contains",
    "statusCode", "status-code", "notEmpty", "not-empty", "semver", "eachKey", "each-key", "eachValue", "each-value",
}


class SpecError(Exception):
    pass


def check_matchers(value, where):
    if isinstance(value, dict):
        kind = value.get(MATCHER_KEY)
        if kind is not None and kind not in KNOWN_MATCHERS:
            raise SpecError(f"{where}: unknown matcher type {kind!r}")
        for k, v in value.items():
            check_matchers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for n, v in enumerate(value):
            check_matchers(v, f"{where}[{n}]")


def die(message, code=2):
    print(f"pact_mock: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def is_matcher(value):
    return isinstance(value, dict) and MATCHER_KEY in value


def example(value):
    """The example value of integration JSON (matchers replaced by their "value")."""
    if is_matcher(value):
        return example(value.get("value"))
    if isinstance(value, dict):
        return {k: example(v) for k, v in value.items()}
    if isinstance(value, list):
        return [example(v) for v in value]
    return value


def find_header(headers, name):
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def content_type_of(headers):
    value = example(find_header(headers, "Content-Type"))
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def add_headers(interaction, headers, part, where):
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise SpecError(f"{where}.headers must be an object")
    for name, value in headers.items():
        if isinstance(value, str):
            # Verbatim: set_header does not try to parse the value as JSON.
            interaction.set_header(name, value, part=part)
        elif is_matcher(value):
            interaction.with_header(name, json.dumps(value), part=part)
        elif isinstance(value, list) and all(isinstance(v, str) or is_matcher(v) for v in value):
            for v in value:
                interaction.with_header(name, v if isinstance(v, str) else json.dumps(v), part=part)
        else:
            raise SpecError(f"{where}.headers[{name!r}] must be a string, a list of strings or a matcher")


def add_query(interaction, query, where):
    if query is None:
        return
    if isinstance(query, str):
        pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    elif isinstance(query, dict):
        pairs = []
        for name, value in query.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = str(v)
                if not (isinstance(v, str) or is_matcher(v)):
                    raise SpecError(f"{where}.query[{name!r}] must be a string, a list of strings or a matcher")
                pairs.append((name, v))
    else:
        raise SpecError(f"{where}.query must be an object (name -> value or list of values) or a query string")
    for name, v in pairs:
        interaction.with_query_parameter(name, v if isinstance(v, str) else json.dumps(v))


def add_body(interaction, part_spec, part, where):
    if "body" not in part_spec or part_spec["body"] is None:
        return
    body = part_spec["body"]
    content_type = content_type_of(part_spec.get("headers"))
    is_json = content_type is None or "json" in content_type.lower()
    if isinstance(body, str) and (content_type is None or not is_json):
        interaction.with_body(body, content_type or "text/plain", part=part)
    elif is_json:
        interaction.with_body(json.dumps(body), content_type or "application/json", part=part)
    else:
        raise SpecError(f"{where}.body is JSON but Content-Type is {content_type!r}")


def build_pact(spec, pact_spec):
    from pact import Pact

    for key in ("consumer", "provider"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise SpecError(f"'{key}' must be a non-empty string")
    interactions = spec.get("interactions")
    if not isinstance(interactions, list) or not interactions:
        raise SpecError("'interactions' must be a non-empty list")

    pact = Pact(spec["consumer"], spec["provider"]).with_specification(pact_spec)
    seen = set()
    for n, item in enumerate(interactions):
        where = f"interactions[{n}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where} must be an object")
        description = item.get("description")
        if not isinstance(description, str) or not description:
            raise SpecError(f"{where}.description must be a non-empty string")
        if description in seen:
            raise SpecError(f"duplicate interaction description {description!r}")
        seen.add(description)
        request, response = item.get("request"), item.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise SpecError(f"{where} needs 'request' and 'response' objects")
        method, path = request.get("method"), request.get("path")
        if not isinstance(method, str) or not (isinstance(path, str) or is_matcher(path)):
            raise SpecError(f"{where}.request needs a 'method' string and a 'path' (string or matcher)")
        status = response.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise SpecError(f"{where}.response.status must be an integer")

        check_matchers(item, where)

        interaction = pact.upon_receiving(description)
        for state in item.get("providerStates") or []:
            if isinstance(state, str):
                state = {"name": state}
            if not isinstance(state, dict) or not isinstance(state.get("name"), str):
                raise SpecError(f"{where}.providerStates entries need a 'name' string")
            params = state.get("params")
            if params is not None and not isinstance(params, dict):
                raise SpecError(f"{where}.providerStates params must be an object")
            interaction.given(state["name"], params or None)

        interaction.with_request(method.upper(), path if isinstance(path, str) else json.dumps(path))
        add_query(interaction, request.get("query"), f"{where}.request")
        add_headers(interaction, request.get("headers"), "Request", f"{where}.request")
        add_body(interaction, request, "Request", f"{where}.request")

        interaction.will_respond_with(status)
        add_headers(interaction, response.get("headers"), "Response", f"{where}.response")
        add_body(interaction, response, "Response", f"{where}.response")
    return pact


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def wait_for_stop():
    signal.sigwait(STOP_SIGNALS)


def one_line(text):
    return " ".join(str(text).split())


def describe_inner(m):
    kind = m.get("type", "")
    text = one_line(m.get("mismatch") or "")
    if kind == "BodyMismatch":
        where = f"body {m.get('path', '$')}"
    elif kind == "HeaderMismatch":
        where = f"header {m.get('key')!r}"
    elif kind == "QueryMismatch":
        where = f"query parameter {m.get('parameter')!r}"
        if not text:
            text = f"expected {m.get('expected')!r}, got {m.get('actual')!r}"
    elif kind == "MethodMismatch":
        where, text = "method", text or f"expected {m.get('expected')}, got {m.get('actual')}"
    elif kind == "PathMismatch":
        where = "path"
    elif kind == "BodyTypeMismatch":
        where = "body content type"
        text = text or f"expected {m.get('expected')}, got {m.get('actual')}"
    else:
        where = kind or "mismatch"
    if not text:
        text = one_line(json.dumps(m, sort_keys=True))
    if kind == "HeaderMismatch" and text.startswith("Mismatch with header"):
        return text
    return f"{where}: {text}"


class Reporter:
    """Turns the core's mismatch list into lines naming the interactions."""

    def __init__(self, spec):
        self.items = spec["interactions"]
        self.missing = set()

    def candidates(self, method, path):
        return [
            it for it in self.items
            if it["request"]["method"].upper() == (method or "").upper()
            and (is_matcher(it["request"]["path"]) or example(it["request"]["path"]) == path)
        ]

    def missing_lines(self, entries):
        lines = []
        for e in entries:
            cands = [c for c in self.candidates(e.get("method"), e.get("path"))
                     if c["description"] not in self.missing]
            if len(cands) > 1:
                req = e.get("request") or {}
                cands.sort(key=lambda c: -self.score(c, req))
            if cands:
                desc = cands[0]["description"]
                self.missing.add(desc)
                lines.append(f'MISSING REQUEST: interaction "{desc}" ({e.get("method")} {e.get("path")}) '
                             "was never called")
            else:
                lines.append(f"MISSING REQUEST: {e.get('method')} {e.get('path')} was never called")
        return lines

    @staticmethod
    def score(item, req):
        spec_req = item["request"]
        score = 0
        for key in ("query", "body"):
            if key in spec_req and example(spec_req[key]) == req.get(key):
                score += 1
        headers = {k.lower(): v for k, v in (req.get("headers") or {}).items()}
        for name, value in (spec_req.get("headers") or {}).items():
            if str(example(value)) == str(headers.get(name.lower())):
                score += 1
        return score

    @staticmethod
    def consistent(item, inner):
        """Whether a header/query mismatch's expected value is this interaction's example value."""
        req = item["request"]
        for m in inner:
            if m.get("type") == "HeaderMismatch" and m.get("key") and "expected" in m:
                value = example(find_header(req.get("headers"), m["key"]))
            elif m.get("type") == "QueryMismatch" and m.get("parameter") and "expected" in m:
                value = example((req.get("query") or {}).get(m["parameter"])) \
                    if isinstance(req.get("query"), dict) else None
            else:
                continue
            values = value if isinstance(value, list) else [value]
            if str(m["expected"]) not in [str(v) for v in values] and str(m["expected"]) != ", ".join(map(str, values)):
                return False
        return True

    def interaction_name(self, method, path, inner):
        cands = self.candidates(method, path)
        pick = [c for c in cands if self.consistent(c, inner)] or cands
        pick = [c for c in pick if c["description"] in self.missing] or pick
        if len(pick) == 1:
            return f'interaction "{pick[0]["description"]}"'
        if pick:
            return "one of interactions " + ", ".join(f'"{c["description"]}"' for c in pick)
        return "an interaction"

    def lines(self, mismatches):
        by_type = {}
        for m in mismatches:
            by_type.setdefault(str(m.get("type", "")).lower().replace("_", "-"), []).append(m)
        out = self.missing_lines(by_type.pop("missing-request", []))
        for m in by_type.pop("request-mismatch", []):
            inner = m.get("mismatches") or [{}]
            who = self.interaction_name(m.get("method"), m.get("path"), inner)
            for i in inner:
                out.append(f"REQUEST MISMATCH: {who} ({m.get('method')} {m.get('path')}): {describe_inner(i)}")
        for m in by_type.pop("request-not-found", []):
            req = m.get("request") or {}
            query = req.get("query")
            qs = ""
            if isinstance(query, dict) and query:
                qs = "?" + "&".join(f"{k}={v}" for k, vs in query.items()
                                    for v in (vs if isinstance(vs, list) else [vs]))
            out.append(f"UNEXPECTED REQUEST: {m.get('method')} {m.get('path')}{qs} matched no interaction")
        for kind, rest in by_type.items():
            for m in rest:
                out.append(f"MISMATCH: {kind or 'unknown'}: {one_line(json.dumps(m, sort_keys=True))}")
        return out


def main():
    parser = argparse.ArgumentParser(description="Pact mock provider for consumer tests.")
    parser.add_argument("--spec", required=True, help="interaction spec JSON file")
    parser.add_argument("--out-dir", required=True, help="directory for <consumer>-<provider>.json")
    parser.add_argument("--pact-spec", default="V4", choices=["V3", "V4"], help="Pact specification (default V4)")
    parser.add_argument("--verbose", action="store_true", help="log the Pact core at DEBUG level to stderr")
    args = parser.parse_args()
    # Blocked before any thread starts (the core's included), so that only sigwait below takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pact").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    logging.getLogger("pact.ffi").setLevel(logging.DEBUG if args.verbose else logging.WARNING)

    try:
        with open(args.spec, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        die(f"cannot read spec {args.spec}: {e}")
    if not isinstance(spec, dict):
        die("the spec must be a JSON object")

    import pact_ffi

    try:
        pact = build_pact(spec, args.pact_spec)
    except SpecError as e:
        die(f"bad spec: {e}")
    except (RuntimeError, ValueError, TypeError) as e:
        die(f"the Pact core rejected the spec: {e}")

    try:
        server = pact.serve(addr="127.0.0.1", port=0, raises=False, verbose=False)
        server.__enter__()
    except RuntimeError as e:
        die(f"cannot start the mock server: {e}")

    print(f"READY {server.port}", flush=True)
    wait_for_stop()

    mismatches = pact_ffi.mock_server_mismatches(server._handle)  # raw JSON list from the core
    matched = pact_ffi.mock_server_matched(server._handle)
    if matched and not mismatches:
        out_dir = os.path.abspath(args.out_dir)
        try:
            server.write_file(out_dir, overwrite=True)
        except (RuntimeError, ValueError, OSError) as e:
            die(f"cannot write the pact file: {e}")
        path = os.path.join(out_dir, f"{spec['consumer']}-{spec['provider']}.json")
        if not os.path.isfile(path):
            die(f"the Pact core did not write {path}")
        print(f"OK {path}", flush=True)
        code = 0
    else:
        lines = Reporter(spec).lines(mismatches) or ["MISMATCH: the mock server reports the pact as not matched"]
        for line in lines:
            print(line)
        print(f"FAILED {len(lines)} problem(s); no pact file written", flush=True)
        code = 1
    return code  # the server handle shuts the mock server down when it is garbage-collected


if __name__ == "__main__":
    sys.exit(main())
