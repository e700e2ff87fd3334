#!/usr/bin/env python3
"""The guide's order flow through a deployed gateway (used by scripts/test-deploy.sh):

    deploy-flow.py GATEWAY ADMIN_PASSWORD                      # seed a product, sign up, log in, order, pay, wait for shipped
    deploy-flow.py GATEWAY ADMIN_PASSWORD --expect-down PATH   # PATH answers 503 JSON, quickly, while its service is stopped
    deploy-flow.py GATEWAY ADMIN_PASSWORD --expect-up PATH     # PATH answers 200 again within a minute
    deploy-flow.py GATEWAY ADMIN_PASSWORD --drain CONTAINER    # a request in flight survives `docker stop` of the gateway
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.error
import urllib.request
import uuid


def call(method, url, body=None, token=None, timeout=10):
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def expect(condition, message):
    if not condition:
        raise SystemExit("FAILED: " + message)


def flow(gateway, admin_password):
    status, login = call("POST", gateway + "/api/auth/login", {"email": "admin@shop.local", "password": admin_password})
    expect(status == 200, "admin login answered %s %s" % (status, login))
    admin = login["token"]
    product = {"name": "Wireless Mouse", "price": 29.99, "stock": 100}
    status, body = call("PUT", gateway + "/api/inventory/product-1", product, admin)
    expect(status in (200, 201), "PUT product answered %s %s" % (status, body))

    email = "deploy-%s@example.com" % uuid.uuid4().hex[:8]
    status, user = call("POST", gateway + "/api/users", {"email": email, "name": "Deploy Test", "password": "Secret123"})
    expect(status == 201, "sign-up answered %s %s" % (status, user))
    status, login = call("POST", gateway + "/api/auth/login", {"email": email, "password": "Secret123"})
    expect(status == 200, "login answered %s %s" % (status, login))
    token = login["token"]
    address = {"street": "1 Main St", "city": "Springfield", "country": "US", "zipCode": "12345"}
    status, order = call("POST", gateway + "/api/orders",
                         {"items": [{"productId": "product-1", "quantity": 1, "price": 29.99}], "shippingAddress": address}, token)
    expect(status == 201 and order["status"] == "pending", "order answered %s %s" % (status, order))
    card = {"number": "4111111111111111", "expiryMonth": 12, "expiryYear": 2030, "cvv": "123"}
    # The stock reservation is an event away: a payment before it may be refused as not payable yet, so retry briefly.
    deadline = time.monotonic() + 30
    while True:
        status, payment = call("POST", gateway + "/api/payments",
                               {"orderId": order["id"], "amount": 29.99, "paymentMethod": "credit_card", "cardDetails": card}, token)
        if status in (200, 201) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(status in (200, 201), "payment answered %s %s" % (status, payment))
    deadline = time.monotonic() + 60
    while True:
        status, current = call("GET", gateway + "/api/orders/" + order["id"], token=token)
        if status == 200 and current["status"] == "shipped":
            break
        expect(time.monotonic() < deadline, "order not shipped within 60 s: %s %s" % (status, current))
        time.sleep(0.5)
    print("    order %s: pending → paid → shipped (tracking %s)" % (order["id"], current.get("trackingNumber")))
    deadline = time.monotonic() + 60
    while True:
        status, notes = call("GET", gateway + "/api/notifications", token=token)
        kinds = {n.get("type") for n in notes.get("results", [])} if status == 200 else set()
        if "ORDER_SHIPPED" in kinds:
            break
        expect(time.monotonic() < deadline, "no ORDER_SHIPPED notification within 60 s: %s %s" % (status, notes))
        time.sleep(0.5)
    print("    notifications: %s" % ", ".join(sorted(k for k in kinds if k)))


def expect_down(gateway, path):
    deadline = time.monotonic() + 30
    while True:
        start = time.monotonic()
        status, body = call("GET", gateway + path)
        elapsed = time.monotonic() - start
        if status == 503:
            expect(elapsed < 2, "the 503 took %.1f s" % elapsed)
            expect(isinstance(body, dict) and "error" in body, "the 503 is not JSON: %r" % (body,))
            print("    %s → 503 in %.0f ms: %s" % (path, elapsed * 1000, body["error"]))
            return
        expect(time.monotonic() < deadline, "%s still answers %s with its service stopped" % (path, status))
        time.sleep(0.2)


def expect_up(gateway, path):
    deadline = time.monotonic() + 60
    while True:
        status, _ = call("GET", gateway + path)
        if status == 200:
            print("    %s → 200 again" % path)
            return
        expect(time.monotonic() < deadline, "%s answers %s a minute after its service returned" % (path, status))
        time.sleep(0.5)


DOCKER = os.environ.get("DOCKER", "docker")


def has_read(pid, port, count):
    """True when, in the network namespace of `pid`, a connection to `port` has received at least `count` bytes and
    its server has read them all (an empty receive queue): the request so far is in the server's hands."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-Htni", "state", "established", "( sport = :%d )" % port],
                         check=True, capture_output=True, text=True).stdout
    # Each connection: a line with Recv-Q first, then (indented) its TCP info with bytes_received:N.
    connections, current = [], None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = {"queued": int(line.split()[0]), "received": 0}
            connections.append(current)
        elif current is not None:
            for field in line.split():
                if field.startswith("bytes_received:"):
                    current["received"] = int(field.split(":", 1)[1])
    return any(c["queued"] == 0 and c["received"] >= count for c in connections)


def drain(gateway, container):
    """A slow client is halfway through its request when the gateway's container is told to stop (SIGTERM): the
    gateway stops accepting, finishes that request (the rest of the body arrives a second later), answers it, and then
    exits by itself, well inside the grace period."""
    url = urllib.parse.urlsplit(gateway)
    pid = int(subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", container], check=True, capture_output=True,
                             text=True).stdout)
    body = json.dumps({"email": "drain-%s@example.com" % uuid.uuid4().hex[:8], "name": "Drain Test",
                       "password": "Secret123"}).encode()
    head = ("POST /api/users HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (url.netloc, len(body))).encode()
    client = socket.create_connection((url.hostname, url.port), timeout=30)
    client.sendall(head + body[:20])
    # The gateway has received and read what was sent before it is told to stop.
    deadline = time.monotonic() + 10
    while not has_read(pid, 3000, len(head) + 20):
        expect(time.monotonic() < deadline, "the gateway did not read the request's first bytes")
        time.sleep(0.05)
    started = time.monotonic()
    stop = subprocess.Popen([DOCKER, "stop", "-t", "45", container], stdout=subprocess.DEVNULL)
    time.sleep(1)  # the slow client: the rest of its body comes a second after SIGTERM
    client.sendall(body[20:])
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = client.recv(4096)
        expect(chunk, "the gateway closed the connection without answering: %r" % reply)
        reply += chunk
    status = int(reply.split(b" ", 2)[1])
    expect(status == 201, "the request in flight was answered %d: %r" % (status, reply[:200]))
    expect(stop.wait(timeout=60) == 0, "docker stop failed")
    stopped = time.monotonic() - started
    state = json.loads(subprocess.run([DOCKER, "inspect", "-f", "{{json .State}}", container], check=True,
                                      capture_output=True, text=True).stdout)
    expect(state["ExitCode"] == 0 and not state["OOMKilled"], "the gateway exited with %s" % state["ExitCode"])
    expect(stopped < 45, "the gateway took %.1f s to stop" % stopped)
    print("    a request in flight at SIGTERM answered %d; the gateway exited 0 after %.1f s (grace period 45 s)"
          % (status, stopped))


if __name__ == "__main__":
    gateway, admin_password = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 4 and sys.argv[3] == "--expect-down":
        expect_down(gateway, sys.argv[4])
    elif len(sys.argv) > 4 and sys.argv[3] == "--drain":
        drain(gateway, sys.argv[4])
    elif len(sys.argv) > 4 and sys.argv[3] == "--expect-up":
        expect_up(gateway, sys.argv[4])
    else:
        flow(gateway, admin_password)
