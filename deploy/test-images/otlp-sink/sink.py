"""A stand-in for Jaeger's OTLP/HTTP receiver in tests: accepts POST /v1/traces (protobuf) on 4318 and answers
GET /api/services on 16686 with the span count per service.name seen so far. Parses just enough of the OTLP
protobuf wire format (no generated classes) to read each resource's service.name and count its spans."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
lock = threading.Lock()


def fields(data):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = varint(data, i)
        elif kind == 2:
            length, i = varint(data, i)
            value, i = data[i:i + length], i + length
        elif kind == 1:
            value, i = data[i:i + 8], i + 8
        elif kind == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % kind)
        yield number, kind, value


def varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def service_name(resource):
    for number, _, attribute in fields(resource):
        if number != 1:
            continue
        key, value = None, None
        for n, _, v in fields(attribute):
            if n == 1:
                key = v.decode()
            elif n == 2:
                for m, _, s in fields(v):
                    if m == 1:
                        value = s.decode()
        if key == "service.name":
            return value
    return "unknown"


def record(body):
    # ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }
    for number, _, resource_spans in fields(body):
        if number != 1:
            continue
        name, spans = "unknown", 0
        for n, _, value in fields(resource_spans):
            if n == 1:
                name = service_name(value)
            elif n == 2:  # ScopeSpans { repeated Span spans = 2 }
                spans += sum(1 for m, _, _ in fields(value) if m == 2)
        with lock:
            counts[name] = counts.get(name, 0) + spans


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        try:
            record(body)
        except Exception:  # a body it cannot read is refused, as a collector would
            self.send_response(400)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            body = json.dumps({"data": counts}).encode()
        self.send_response(200 if self.path == "/api/services" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


for port in (4318, 16686):
    server = ThreadingHTTPServer(("0.0.0.0", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()
