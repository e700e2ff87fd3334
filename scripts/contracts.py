#!/usr/bin/env python3
"""The project's API contracts: bundles and checks the OpenAPI documents under contracts/openapi.

    scripts/contracts.py bundle                 # writes Sources/ShopContracts/Generated/OpenAPIDocuments.swift
    scripts/contracts.py check                  # the generated file is current, every document is valid OpenAPI 3.1
    scripts/contracts.py responses FILE.jsonl   # every response the tests recorded conforms to its document
    scripts/contracts.py events FILE.jsonl      # every event the tests' producers emitted conforms to contracts/asyncapi.yaml
    scripts/contracts.py write DIR              # the bundled documents as DIR/<name>.json (for reading, for tools)

Each service's document is contracts/openapi/<service>.yaml plus what every service shares (common.yaml: components,
the health/metrics/openapi routes, and the statuses every operation can answer). The gateway's public document is made
from the services' documents: each path a gateway route (gateway.yaml's x-routes, compared with GatewayRouter.table by
a test) leads to, under its public prefix, with the gateway's own statuses. The services serve the bundled documents
from the generated Swift file, so what they serve is what is checked here.

contracts/asyncapi.yaml (AsyncAPI 3.0) holds a JSON Schema for every event and queue message. `check` validates each
documented example against its schema; the generated Swift file carries the examples, which the consumers' tests feed
to their handlers; `events` checks what the producers emitted during the tests and names the consumers a mismatch
would break.
"""
import copy
import json
import os
import re
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OPENAPI = os.path.join(ROOT, "contracts", "openapi")
GENERATED = os.path.join(ROOT, "Sources", "ShopContracts", "Generated", "OpenAPIDocuments.swift")
SERVICES = ["user", "auth", "order", "payment", "inventory", "notification"]
METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]


def load(name, folder=OPENAPI):
    path = os.path.join(folder, name + ".yaml")
    with open(path, encoding="utf-8") as file:
        doc = yaml.safe_load(file)
    empty = list(nulls(doc, ""))
    if empty:
        # Almost always a comma in an unquoted flow-mapping value (`{ description: a, b }`) that YAML split.
        raise SystemExit(f"{os.path.relpath(path, ROOT)}: empty values at {', '.join(empty[:5])}: quote the text before them")
    return doc


def nulls(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                yield f"{where}/{key}"
            yield from nulls(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from nulls(value, f"{where}/{index}")


def operations(doc):
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def add_statuses(operation, statuses):
    """Adds each `status: response name` the operation does not list itself (as a $ref to the shared response)."""
    responses = operation.setdefault("responses", {})
    for status, name in statuses.items():
        responses.setdefault(status, {"$ref": "#/components/responses/" + name})
    operation["responses"] = dict(sorted(responses.items()))


def cross_cutting(operation, common, public):
    rules = common["x-cross-cutting"]
    statuses = dict(rules["always"])
    if "requestBody" in operation:
        statuses.update(rules["withBody"])
    if operation.get("security"):
        statuses.update(rules["secured"])
    if public:
        statuses.update(rules["public"])
        statuses.update(rules["gateway"])
    return statuses


def merge_components(into, source, conflict):
    """Adds `source`'s components to `into`; a name both have with different contents stops with `conflict`."""
    for kind, entries in source.items():
        mine = into.setdefault(kind, {})
        for name, value in entries.items():
            if name in mine and mine[name] != value:
                raise SystemExit(conflict.format(f"components.{kind}.{name}"))
            mine[name] = value


def service_document(service, common):
    doc = load(service)
    merge_components(doc.setdefault("components", {}), common["components"], f"{service}.yaml: {{}} is also in common.yaml, differently")
    paths = doc.setdefault("paths", {})
    for path, item in common["x-service-paths"].items():
        if path in paths:
            raise SystemExit(f"{service}.yaml: {path} is one of the routes every service has (common.yaml)")
        paths[path] = copy.deepcopy(item)
    for _, _, operation in operations(doc):
        add_statuses(operation, cross_cutting(operation, common, public=False))
    return doc


def gateway_routes():
    return load("gateway")["x-routes"]


def public_document(services, common):
    gateway = load("gateway")
    routes = gateway.pop("x-routes")
    paths = {}
    components = {}
    for path, item in gateway["paths"].items():
        paths[path] = item
        for _, operation in ((m, item[m]) for m in METHODS if m in item):
            add_statuses(operation, cross_cutting(operation, common, public=True))
    for prefix, upstream, service in routes:
        doc = services[service]
        used = False
        for path, item in doc["paths"].items():
            if path != upstream and not path.startswith(upstream + "/"):
                continue
            public_path = prefix + path[len(upstream):]
            if public_path in paths:
                raise SystemExit(f"gateway: {public_path} comes from two routes")
            item = copy.deepcopy(item)
            for method in METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                if any("serviceAuth" in requirement for requirement in operation.get("security", [])):
                    raise SystemExit(f"{service}.yaml: {method.upper()} {path} needs a service token but the gateway exposes it as {public_path}")
                add_statuses(operation, cross_cutting(operation, common, public=True))
            paths[public_path] = item
            used = True
        if not used:
            raise SystemExit(f"gateway: the route {prefix} leads to no path of the {service} service's document")
        merge_components(components, doc["components"], "gateway: {} differs between services; rename one")
    gateway["paths"] = dict(sorted(paths.items()))
    gateway["components"] = components
    return gateway


def bundle():
    common = load("common")
    services = {name: service_document(name, common) for name in SERVICES}
    return services, public_document(services, common)


# MARK: AsyncAPI


def load_asyncapi():
    with open(os.path.join(ROOT, "contracts", "asyncapi.yaml"), encoding="utf-8") as file:
        return yaml.safe_load(file)


def asyncapi_messages(doc):
    """Each message with where it travels: (message key, message, channel key, channel, queue or None)."""
    for channel_key, channel in doc["channels"].items():
        for reference in channel.get("messages", {}).values():
            key = reference["$ref"].split("/")[-1]
            message = doc["components"]["messages"][key]
            queue = None if channel["address"] == message["name"] or channel.get("x-toolkit") else channel["address"]
            yield key, message, channel_key, channel, queue


def asyncapi_operations(doc, channel_key, action):
    for name, operation in doc["operations"].items():
        if operation["action"] == action and operation["channel"]["$ref"] == f"#/channels/{channel_key}":
            yield name, operation


def check_asyncapi(doc):
    failures = 0
    if doc.get("asyncapi") != "3.0.0":
        print("contracts/asyncapi.yaml: not an AsyncAPI 3.0.0 document", file=sys.stderr)
        failures += 1
    for key, message, channel_key, channel, _ in asyncapi_messages(doc):
        if not list(asyncapi_operations(doc, channel_key, "send")):
            failures += 1
            print(f"asyncapi: channel {channel_key} has no producer (a send operation)", file=sys.stderr)
        for operation_name, operation in asyncapi_operations(doc, channel_key, "receive"):
            if not operation.get("x-service"):
                failures += 1
                print(f"asyncapi: {operation_name} does not name its consumer (x-service)", file=sys.stderr)
        if not message.get("examples"):
            failures += 1
            print(f"asyncapi: message {key} has no example", file=sys.stderr)
        for example in message.get("examples", []):
            error = schema_error(doc, message["payload"], example["payload"])
            if error:
                failures += 1
                print(f"asyncapi: the example {example.get('name')} of {key} does not match its schema: {error}", file=sys.stderr)
    for name, operation in doc["operations"].items():
        target = operation["channel"]["$ref"].split("/")[-1]
        if target not in doc["channels"]:
            failures += 1
            print(f"asyncapi: {name} points at no channel ({target})", file=sys.stderr)
    return failures


def consumers_of(doc, channel_key):
    return [
        f"{operation.get('x-consumer-group', operation['x-service'])} ({' '.join(operation.get('summary', '').split())[:100]})"
        for _, operation in asyncapi_operations(doc, channel_key, "receive")
    ]


def check_events(recorded):
    doc = load_asyncapi()
    by_route = {}
    for key, message, channel_key, channel, queue in asyncapi_messages(doc):
        if not channel.get("x-toolkit"):
            by_route[(message["name"], queue)] = (key, message, channel_key)
    failures = {}
    seen = 0
    emitted = set()
    for entry in recorded_lines(recorded):
        envelope = entry["envelope"]
        event_type, queue = envelope.get("type"), entry.get("queue")
        if envelope.get("source") not in {f"{service}-service" for service in SERVICES}:
            continue  # the toolkit's own tests publish events of their own
        seen += 1
        route = by_route.get((event_type, queue))
        where = f"{envelope.get('source')} emitted {event_type}" + (f" to the queue {queue}" if queue else "")
        if route is None:
            failures.setdefault(f"{where}, which contracts/asyncapi.yaml does not document", envelope)
            continue
        key, message, channel_key = route
        emitted.add(key)
        error = schema_error(doc, message["payload"], envelope)
        if error:
            consumers = "; ".join(consumers_of(doc, channel_key)) or "none documented"
            failures.setdefault(f"{where} that does not match its schema ({error}): it breaks {consumers}", envelope)
    report(failures, lambda envelope: "event: " + json.dumps(envelope)[:400])
    documented = {key for key, *_ in by_route.values()}
    missing = sorted(documented - emitted)
    print(f"==> {seen} emitted events checked against contracts/asyncapi.yaml: {len(failures)} problem(s); "
          f"{len(emitted)} of {len(documented)} documented messages emitted by the tests" + (f" (not: {', '.join(missing)})" if missing else ""))
    return 1 if failures else 0


def swift_examples(doc):
    lines = [
        "",
        "/// The documented example of every event and queue message (contracts/asyncapi.yaml), with the consumer groups",
        "/// that receive it: the consumers' tests feed these to their handlers.",
        "public enum AsyncAPIExamples {",
        "    public struct Example: Sendable {",
        "        public let message: String",
        "        public let type: String",
        "        /// The work queue it is sent to; nil for an event published to every subscribed group.",
        "        public let queue: String?",
        "        public let consumerGroups: [String]",
        "        /// The whole CloudEvents envelope, as JSON.",
        "        public let envelope: String",
        "    }",
        "",
        "    public static let all: [Example] = [",
    ]
    for key, message, channel_key, channel, queue in asyncapi_messages(doc):
        if channel.get("x-toolkit"):
            continue
        groups = [op.get("x-consumer-group") or op["x-service"] for _, op in asyncapi_operations(doc, channel_key, "receive")]
        for example in message["examples"]:
            envelope = json.dumps(example["payload"], ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            queue_text = f'"{queue}"' if queue else "nil"
            group_text = ", ".join(f'"{group}"' for group in groups)
            lines.append(
                f'        Example(message: "{key}", type: "{message["name"]}", queue: {queue_text}, consumerGroups: [{group_text}], '
                f'envelope: ###"{envelope}"###),'
            )
    lines += ["    ]", "}", ""]
    return "\n".join(lines)


def swift_source(services, public):
    lines = [
        "// Generated by scripts/contracts.py bundle from contracts/openapi/*.yaml: do not edit.",
        "// swift-format-ignore-file",
        "",
        "/// The OpenAPI 3.1 documents, as JSON: each service's (served at `/openapi.json`) and the gateway's public one",
        "/// (`/api/openapi.json`).",
        "public enum OpenAPIDocuments {",
    ]

    def literal(text):
        if '"###' in text:
            raise SystemExit("a document contains the string delimiter")
        return '###"' + text + '"###'

    for name in SERVICES:
        text = json.dumps(services[name], ensure_ascii=False, separators=(",", ":"))
        lines.append(f"    public static let {name} = {literal(text)}")
    text = json.dumps(public, ensure_ascii=False, separators=(",", ":"))
    lines.append(f"    public static let publicAPI = {literal(text)}")
    lines += [
        "",
        "    /// The gateway routes the public document follows: (public prefix, the service's prefix, service).",
        "    public static let gatewayRoutes: [(prefix: String, upstream: String, service: String)] = [",
    ]
    for prefix, upstream, service in gateway_routes():
        lines.append(f'        ("{prefix}", "{upstream}", "{service}"),')
    lines.append("    ]")
    lines += [
        "",
        "    /// The document of `service`; nil for the gateway (its public document is ``publicAPI``) and the payment provider.",
        "    public static func document(for service: ServiceName) -> String? {",
        "        switch service {",
    ]
    for name in SERVICES:
        lines.append(f"        case .{name}: {name}")
    lines += [
        "        case .gateway, .paymentProvider: nil",
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines) + swift_examples(load_asyncapi())


def validate_documents(services, public):
    from openapi_spec_validator import validate

    failures = 0
    ids = {}
    for name, doc in list(services.items()) + [("public", public)]:
        try:
            validate(copy.deepcopy(doc))
        except Exception as error:  # the validator's errors are of several kinds
            failures += 1
            print(f"{name}: not a valid OpenAPI 3.1 document: {error}", file=sys.stderr)
        if name == "public":
            continue
        for path, method, operation in operations(doc):
            identifier = operation.get("operationId")
            if path in ("/openapi.json", "/health", "/health/ready", "/health/live", "/metrics"):
                continue
            if not identifier:
                failures += 1
                print(f"{name}: {method.upper()} {path} has no operationId", file=sys.stderr)
            elif identifier in ids:
                failures += 1
                print(f"{name}: operationId {identifier} is also used by {ids[identifier]}", file=sys.stderr)
            else:
                ids[identifier] = f"{name} {method.upper()} {path}"
    return failures


def check():
    services, public = bundle()
    failures = validate_documents(services, public)
    failures += check_asyncapi(load_asyncapi())
    expected = swift_source(services, public)
    try:
        with open(GENERATED, encoding="utf-8") as file:
            current = file.read()
    except FileNotFoundError:
        current = None
    if current != expected:
        failures += 1
        print(f"{os.path.relpath(GENERATED, ROOT)} is not what contracts/openapi/*.yaml make: run scripts/contracts.py bundle", file=sys.stderr)
    names = ", ".join(SERVICES + ["public"])
    print(f"==> OpenAPI documents ({names}) and contracts/asyncapi.yaml: {'valid' if failures == 0 else f'{failures} problem(s)'}")
    return 1 if failures else 0


# MARK: Recorded responses


def recorded_lines(path):
    """The JSON lines a test run recorded (ContractRecording); none when nothing was recorded."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as file:
        for line in file:
            yield json.loads(line)


def report(failures, show):
    for message, entry in failures.items():
        print(f"contract: {message}\n    {show(entry)}", file=sys.stderr)


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def match_media_type(content, content_type):
    """The documented media type a response's Content-Type falls under, or None."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in content:
        return media
    for documented in content:
        if documented.endswith("/*") and media.startswith(documented[:-1]):
            return documented
    return None


def check_responses(recorded):
    services, _ = bundle()
    failures = {}
    seen = 0
    checked = set()
    for entry in recorded_lines(recorded):
        service = entry["service"]
        doc = services.get(service)
        # No route matched (Hummingbird's "NotFound"): a 404 or 405 for a path no operation has.
        if doc is None or entry.get("route") in (None, "NotFound"):
            continue
        seen += 1
        method = entry["method"].lower()
        if method == "head":
            continue
        where = f"{service}: {entry['method']} {entry['route']} → {entry['status']}"
        item = doc["paths"].get(entry["route"])
        if item is None or method not in item:
            failures.setdefault(f"{service}: {entry['method']} {entry['route']} is not in contracts/openapi/{service}.yaml", entry)
            continue
        checked.add((service, method, entry["route"]))
        operation = item[method]
        response = operation["responses"].get(str(entry["status"])) or operation["responses"].get("default")
        if response is None:
            failures.setdefault(f"{where}: the status is not documented", entry)
            continue
        response = resolve(doc, response)
        for header, spec in response.get("headers", {}).items():
            spec = resolve(doc, spec)
            if spec.get("required") and header.lower() not in (h.lower() for h in entry.get("headers", {})):
                failures.setdefault(f"{where}: the required header {header} is missing", entry)
        content = response.get("content")
        if not content:
            if entry.get("body"):
                failures.setdefault(f"{where}: a body where the document says none", entry)
            continue
        media = match_media_type(content, entry.get("contentType"))
        if media is None:
            failures.setdefault(f"{where}: Content-Type {entry.get('contentType')!r} is not documented ({', '.join(content)})", entry)
            continue
        schema = content[media].get("schema")
        if schema is None or not media.endswith("json"):
            continue
        try:
            body = json.loads(entry.get("body") or "")
        except ValueError:
            failures.setdefault(f"{where}: the body is not JSON", entry)
            continue
        error = schema_error(doc, schema, body)
        if error:
            failures.setdefault(f"{where}: {error}", entry)
    report(failures, lambda entry: "body: " + (entry.get("body") or "")[:300])
    documented = {(s, m, p) for s, doc in services.items() for p, m, _ in operations(doc)}
    print(f"==> {seen} recorded responses checked against the OpenAPI documents: {len(failures)} problem(s); "
          f"{len(checked & documented)} of {len(documented)} documented operations exercised by the tests")
    return 1 if failures else 0


def schema_error(doc, schema, instance):
    """The first way `instance` does not conform to `schema` (whose $refs point into `doc`), or None."""
    from jsonschema import Draft202012Validator

    # The document's $refs are local (`#/components/...`): the schema is checked inside a root that has them.
    root = {"components": doc.get("components", {}), "allOf": [schema]}
    validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))), None)
    if error is None:
        return None
    location = "/".join(str(part) for part in error.absolute_path) or "(body)"
    return f"{location}: {error.message}"


def write(directory):
    services, public = bundle()
    os.makedirs(directory, exist_ok=True)
    for name, doc in list(services.items()) + [("public", public)]:
        with open(os.path.join(directory, name + ".json"), "w", encoding="utf-8") as file:
            json.dump(doc, file, ensure_ascii=False, indent=2)
            file.write("\n")


def main(argv):
    if len(argv) < 2 or argv[1] not in ("bundle", "check", "responses", "events", "write"):
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[1]
    if command == "bundle":
        services, public = bundle()
        os.makedirs(os.path.dirname(GENERATED), exist_ok=True)
        with open(GENERATED, "w", encoding="utf-8") as file:
            file.write(swift_source(services, public))
        return (validate_documents(services, public) + check_asyncapi(load_asyncapi())) and 1
    if command == "check":
        return check()
    if command == "responses":
        return check_responses(argv[2])
    if command == "events":
        return check_events(argv[2])
    if command == "write":
        write(argv[2])
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
