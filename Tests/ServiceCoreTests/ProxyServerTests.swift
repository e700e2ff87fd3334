import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceCore
import ServiceLifecycle
import ServiceProxy
import ServiceTesting
import ServiceTracing
import Testing
import Tracing

@Suite struct ProxyServerTests {
    /// Forwards everything to the upstream on `port`, except `/local` (answered by the proxy) and `/down` (an upstream
    /// nobody listens on).
    struct TestRouter: ProxyRouter {
        let port: Int
        let deadPort: Int

        func route(_ head: HTTPRequestHead, request: ProxyRequestInfo) -> ProxyRoute {
            if head.uri == "/local" { return .decided(.respond(.json(.ok, #"{"local":true}"#))) }
            if head.uri == "/down" { return .decided(.forward(ProxyUpstream(name: "dead", host: "127.0.0.1", port: deadPort), target: "/")) }
            if head.uri.hasPrefix("/deferred") {
                let port = self.port
                return .deferred { .forward(ProxyUpstream(name: "stub", host: "127.0.0.1", port: port), target: "/echo?via=deferred") }
            }
            return .decided(.forward(ProxyUpstream(name: "stub", host: "127.0.0.1", port: port), target: "/up" + head.uri))
        }
    }

    struct Echo: Codable, ResponseEncodable {
        var uri: String
        var correlation: String?
        var forwardedFor: String?
        var connection: String?
        var bodyBytes: Int
    }

    /// Requests that reached the upstream's `/up/wait`.
    static let arrivals = NIOLockedValueBox(0)
    /// Requests that reached the upstream's `/up/smuggled`: only ever hidden in another request's body.
    static let smuggled = NIOLockedValueBox(0)

    static func upstream(onServerRunning: @escaping @Sendable (Int) async -> Void) -> any Service {
        let router = Router()
        router.on("up/echo", method: .get) { request, _ in
            Echo(
                uri: request.uri.description, correlation: request.headers[.correlationID], forwardedFor: request.headers[.init("x-forwarded-for")!],
                connection: request.headers[.connection], bodyBytes: 0)
        }
        router.get("up/smuggled") { _, _ -> String in
            smuggled.withLockedValue { $0 += 1 }
            return "smuggled"
        }
        router.get("echo") { request, _ in
            Echo(uri: request.uri.description, correlation: request.headers[.correlationID], forwardedFor: nil, connection: nil, bodyBytes: 0)
        }
        router.post("up/upload") { request, _ in
            var count = 0
            for try await chunk in request.body { count += chunk.readableBytes }
            return Echo(uri: request.uri.description, correlation: nil, forwardedFor: nil, connection: nil, bodyBytes: count)
        }
        router.get("up/stream") { _, _ in
            Response(
                status: .ok,
                body: ResponseBody { writer in
                    for index in 0..<256 {
                        try await writer.write(ByteBuffer(repeating: UInt8(index % 256), count: 4096))
                    }
                    try await writer.finish(nil)
                })
        }
        router.get("up/wait") { _, _ -> String in
            arrivals.withLockedValue { $0 += 1 }
            try await Task.sleep(for: .milliseconds(300))
            return "finished"
        }
        // The trace context the proxy sent on: `traceparent|tracestate`.
        router.get("up/traced") { request, _ -> String in
            "\(request.headers[.init("traceparent")!] ?? "")|\(request.headers[.init("tracestate")!] ?? "")"
        }
        router.get("up/closing") { _, _ in
            Response(status: .ok, headers: [.connection: "close", .contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "bye")))
        }
        router.get("up/slow") { _, _ -> String in
            // Far longer than the proxy's 200 ms timeout in the test below.
            try await Task.sleep(for: .seconds(2))
            return "late"
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { await onServerRunning($0.localAddress!.port!) },
            logger: Logger(label: "upstream")
        )
    }

    func withProxy(
        maxBody: Int = 1 << 20,
        timeout: TimeAmount = .seconds(20),
        idleTimeout: TimeAmount = .seconds(60),
        tracer: (any Tracer)? = nil,
        _ body: @Sendable @escaping (String, HTTPClient) async throws -> Void
    ) async throws {
        let closed = try ClosedPort()
        let dead = closed.port
        defer { withExtendedLifetime(closed) {} }
        try await RunningService.with([{ Self.upstream(onServerRunning: $0) }]) { ports in
            try await RunningService.with([
                { onServerRunning in
                    ProxyServer(
                        configuration: .init(port: 0, maxBodyBytes: maxBody, responseTimeout: timeout, idleTimeout: idleTimeout),
                        router: TestRouter(port: ports[0], deadPort: dead),
                        tracer: tracer,
                        logger: Logger(label: "proxy"),
                        onServerRunning: onServerRunning
                    )
                }
            ]) { proxyPorts in
                // A client that adds no trace context of its own: AsyncHTTPClient traces with the process's global tracer
                // when one is bootstrapped (another suite may have done so), and its `traceparent` would make the proxy's
                // spans children of the client's.
                var configuration = HTTPClient.Configuration()
                configuration.tracing.tracer = nil
                let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
                do {
                    try await body("http://127.0.0.1:\(proxyPorts[0])", client)
                    try await client.shutdown()
                } catch {
                    try? await client.shutdown()
                    throw error
                }
            }
        }
    }

    func get(_ client: HTTPClient, _ url: String, headers: [(String, String)] = []) async throws -> (HTTPResponseStatus, HTTPHeaders, ByteBuffer) {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await client.execute(request, timeout: .seconds(10))
        return (response.status, response.headers, try await response.body.collect(upTo: 4 << 20))
    }

    @Test func forwardsWithRewrittenTargetCorrelationAndClientAddress() async throws {
        try await withProxy { base, client in
            for _ in 0..<3 {  // the later requests reuse pooled upstream connections
                let (status, headers, body) = try await get(
                    client, base + "/echo?x=1",
                    headers: [("x-correlation-id", "trace-7"), ("connection", "keep-alive, x-secret"), ("x-secret", "hop")])
                #expect(status == .ok)
                #expect(headers.first(name: "x-correlation-id") == "trace-7")
                let echo = try JSONDecoder().decode(Echo.self, from: body)
                #expect(echo.uri == "/up/echo?x=1")
                #expect(echo.correlation == "trace-7")
                #expect(echo.forwardedFor == "127.0.0.1")
                #expect(echo.connection == nil)
            }
            let (_, headers, body) = try await get(client, base + "/echo")
            let generated = try #require(headers.first(name: "x-correlation-id"))
            #expect(try JSONDecoder().decode(Echo.self, from: body).correlation == generated)
        }
    }

    @Test func localAndDeferredDecisions() async throws {
        try await withProxy { base, client in
            let (status, headers, body) = try await get(client, base + "/local")
            #expect(status == .ok && String(buffer: body) == #"{"local":true}"#)
            #expect(headers.first(name: "content-type")?.hasPrefix("application/json") == true)
            let (deferredStatus, _, deferredBody) = try await get(client, base + "/deferred")
            #expect(deferredStatus == .ok)
            #expect(try JSONDecoder().decode(Echo.self, from: deferredBody).uri == "/echo?via=deferred")
        }
    }

    @Test func streamsLargeBodiesBothWays() async throws {
        try await withProxy(maxBody: 2 << 20) { base, client in
            var request = HTTPClientRequest(url: base + "/upload")
            request.method = .POST
            let chunks = (0..<64).map { _ in ByteBuffer(repeating: 7, count: 16 * 1024) }
            request.body = .stream(chunks.async, length: .known(Int64(64 * 16 * 1024)))
            let response = try await client.execute(request, timeout: .seconds(10))
            #expect(response.status == .ok)
            let echo = try JSONDecoder().decode(Echo.self, from: try await response.body.collect(upTo: 1 << 20))
            #expect(echo.bodyBytes == 64 * 16 * 1024)

            let (status, _, body) = try await get(client, base + "/stream")
            #expect(status == .ok)
            #expect(body.readableBytes == 256 * 4096)
            #expect(body.getInteger(at: 255 * 4096, as: UInt8.self) == 255)
        }
    }

    @Test func oversizedBodiesAreRefusedWith413() async throws {
        try await withProxy(maxBody: 1000) { base, client in
            var request = HTTPClientRequest(url: base + "/upload")
            request.method = .POST
            request.body = .bytes(ByteBuffer(repeating: 1, count: 5000))
            let response = try await client.execute(request, timeout: .seconds(10))
            #expect(response.status == .payloadTooLarge)
            let body = try await response.body.collect(upTo: 1 << 16)
            #expect(String(buffer: body).contains("Request body too large"))
        }
    }

    @Test func anUnreachableUpstreamIsA503AtOnce() async throws {
        try await withProxy { base, client in
            let started = ContinuousClock.now
            let (status, headers, body) = try await get(client, base + "/down", headers: [("x-correlation-id", "c-503")])
            #expect(status == .serviceUnavailable)
            #expect(headers.first(name: "x-correlation-id") == "c-503")
            #expect(String(buffer: body) == #"{"error":"Service unavailable","service":"dead"}"#)
            #expect(ContinuousClock.now - started < .seconds(4))
        }
    }

    @Test func aSlowUpstreamIsA504AfterTheTimeout() async throws {
        try await withProxy(timeout: .milliseconds(200)) { base, client in
            let (status, _, body) = try await get(client, base + "/slow")
            #expect(status == .gatewayTimeout)
            #expect(String(buffer: body).contains("Upstream timed out"))
            // The client connection still serves the next request.
            let (next, _, _) = try await get(client, base + "/local")
            #expect(next == .ok)
        }
    }

    @Test func gracefulShutdownFinishesInFlightRequestsAndStopsAccepting() async throws {
        try await RunningService.with([{ Self.upstream(onServerRunning: $0) }]) { ports in
            let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
            let proxy = ProxyServer(
                configuration: .init(port: 0),
                router: TestRouter(port: ports[0], deadPort: 9),
                logger: Logger(label: "proxy"),
                onServerRunning: { portContinuation.yield($0) }
            )
            let group = ServiceGroup(services: [proxy], logger: Logger(label: "test"))
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    defer { portContinuation.finish() }
                    try await group.run()
                }
                var iterator = portStream.makeAsyncIterator()
                let port = try #require(await iterator.next())
                let before = Self.arrivals.withLockedValue { $0 }
                let inFlight = Task { try await get(client, "http://127.0.0.1:\(port)/wait") }
                // Shut down only once the request is being served upstream.
                let deadline = ContinuousClock.now + .seconds(5)
                while Self.arrivals.withLockedValue({ $0 }) == before {
                    try #require(ContinuousClock.now < deadline)
                    try await Task.sleep(for: .milliseconds(5))
                }
                await group.triggerGracefulShutdown()
                let (status, _, body) = try await inFlight.value
                #expect(status == .ok)
                #expect(String(buffer: body) == "finished")
                try await tasks.waitForAll()
                await #expect(throws: (any Error).self) { _ = try await get(client, "http://127.0.0.1:\(port)/echo") }
            }
            try await client.shutdown()
        }
    }

    static func port(of base: String) -> Int { Int(base.split(separator: ":").last!)! }

    @Test func anUpstreamThatClosesIsNotReused() async throws {
        try await withProxy { base, client in
            for _ in 0..<5 {
                let (closing, _, body) = try await get(client, base + "/closing")
                #expect(closing == .ok && String(buffer: body) == "bye")
                var request = HTTPClientRequest(url: base + "/upload")
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: "payload"))
                let response = try await client.execute(request, timeout: .seconds(10))
                #expect(response.status == .ok)
                _ = try await response.body.collect(upTo: 1 << 16)
            }
        }
    }

    @Test func http10ClientsGetABodyDelimitedByClose() async throws {
        try await withProxy { base, _ in
            let connection = try await RawHTTPConnection(port: Self.port(of: base))
            try await connection.send("GET /stream HTTP/1.0\r\nHost: test\r\n\r\n")
            try await connection.wait(for: "the response and the close") { _, closed in closed }
            let response = connection.received
            #expect(response.hasPrefix("HTTP/1.0 200"))
            #expect(!response.lowercased().contains("transfer-encoding"))
            #expect(connection.bodyBytes == 256 * 4096)
        }
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request without Host, or with two, is 400 and goes nowhere; HTTP/1.0 needs none.
    @Test func http11RequestsNeedExactlyOneHost() async throws {
        try await withProxy { base, _ in
            for request in [
                "GET /echo HTTP/1.1\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: a, b\r\n\r\n",
            ] {
                let connection = try await RawHTTPConnection(port: Self.port(of: base))
                try await connection.send(request)
                try await connection.wait(for: "the answer") { received, _ in received.contains("\r\n\r\n{") }
                #expect(connection.received.hasPrefix("HTTP/1.1 400"), "\(request.debugDescription)")
                #expect(connection.received.contains("Host header"), "\(request.debugDescription)")
                #expect(!connection.received.contains("\"uri\""), "\(request.debugDescription) reached the upstream")
                await connection.close()
            }
            let old = try await RawHTTPConnection(port: Self.port(of: base))
            try await old.send("GET /echo HTTP/1.0\r\n\r\n")
            try await old.wait(for: "the response and the close") { _, closed in closed }
            #expect(old.received.hasPrefix("HTTP/1.0 200"))
        }
    }

    @Test func expectContinueIsAnsweredByTheProxy() async throws {
        try await withProxy { base, _ in
            let connection = try await RawHTTPConnection(port: Self.port(of: base))
            try await connection.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            try await connection.wait(for: "100 Continue") { received, _ in received.contains("HTTP/1.1 100 Continue") }
            try await connection.send("hello")
            try await connection.wait(for: "the final response") { received, _ in received.contains("\"bodyBytes\":5") }
            #expect(connection.received.contains("HTTP/1.1 200 OK"))
            await connection.close()
        }
    }

    @Test func stalledUploadsAndIdleConnectionsAreClosed() async throws {
        try await withProxy(idleTimeout: .milliseconds(200)) { base, _ in
            let stalled = try await RawHTTPConnection(port: Self.port(of: base))
            try await stalled.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nabc")
            try await stalled.wait(for: "the server to close a stalled upload") { _, closed in closed }
            let idle = try await RawHTTPConnection(port: Self.port(of: base))
            try await idle.wait(for: "the server to close an idle connection") { _, closed in closed }
        }
    }

    /// Header tricks at the gateway's door: a value carrying a line break (to smuggle a header of its own), a NUL, an
    /// obsolete folded line, a header block over the limit. Each is refused (400, or the connection closed) before
    /// anything reaches the upstream, nothing injected comes back, and the next client is served as usual.
    @Test func headerInjectionAndOversizedHeadersAreRefused() async throws {
        try await withProxy { base, client in
            let port = Self.port(of: base)
            let attacks = [
                "GET /echo HTTP/1.1\r\nHost: test\r\nX-Correlation-ID: abc\rSet-Cookie: injected=1\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: test\r\nX-Correlation-ID: abc\nSet-Cookie: injected=1\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: test\r\nX-Correlation-ID: abc\u{0}def\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: test\r\nX-Long: a\r\n folded-on-to-the-next-line\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: test\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n",
                "GET /echo HTTP/1.1\r\nHost: test\r\n\(String(repeating: "X-Many: b\r\n", count: 20_000))\r\n",
            ]
            for attack in attacks {
                let connection = try await RawHTTPConnection(port: port)
                try? await connection.send(attack)
                try await connection.wait(for: "a refusal") { received, closed in closed || received.contains("\r\n\r\n") }
                let received = connection.received
                #expect(received.isEmpty || received.hasPrefix("HTTP/1.1 4"), "\(attack.prefix(60)): \(received.prefix(120))")
                #expect(!received.lowercased().contains("set-cookie"), "nothing injected comes back")
                #expect(!received.contains("\"uri\""), "\(attack.prefix(60)) reached the upstream")
                await connection.close()
            }
            // A correlation id that is not a plain token is replaced, never reflected.
            var request = HTTPClientRequest(url: base + "/echo")
            request.headers.add(name: "x-correlation-id", value: "<script>alert(1)</script>")
            let response = try await client.execute(request, timeout: .seconds(20))
            _ = try await response.body.collect(upTo: 1 << 16)
            #expect(response.status == .ok)
            #expect(response.headers.first(name: "x-correlation-id").map { !$0.contains("<") } == true)
        }
    }

    /// Request-smuggling shapes, where a proxy and an upstream could disagree on where a request ends: Content-Length
    /// with Transfer-Encoding, two different Content-Lengths, an obfuscated Transfer-Encoding. Each is refused (400, or
    /// the connection closed) and neither it nor the request hidden in its body reaches the upstream.
    @Test func requestSmugglingShapesAreRefused() async throws {
        try await withProxy { base, _ in
            let port = Self.port(of: base)
            let hidden = "GET /echo HTTP/1.1\r\nHost: test\r\n\r\n"
            let attacks = [
                "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\(hidden)",
                "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n\(hidden)",
                "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nContent-Length: 36\r\n\r\n\(hidden)",
                "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n\(hidden)",
                "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n\(hidden)",
                "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n\(hidden)",
            ]
            for attack in attacks {
                let connection = try await RawHTTPConnection(port: port)
                try? await connection.send(attack)
                try await connection.wait(for: "a refusal") { received, closed in closed || received.contains("\r\n\r\n") }
                let received = connection.received
                let shape = attack.split(separator: "\r\n\r\n").first ?? ""
                #expect(
                    received.isEmpty || (received.hasPrefix("HTTP/1.1 400") && received.contains(#"{"error":"#)), "\(shape): \(received.prefix(120))")
                #expect(!received.contains("bodyBytes") && !received.contains("\"uri\""), "\(shape) reached the upstream: \(received.prefix(300))")
                await connection.close()
            }
        }
    }

    /// A body the upstream could not delimit would be read there as the start of the next request: a request hidden in
    /// it would reach the upstream unseen by the router, and its answer would go to whoever's request is next on that
    /// connection. A TRACE's content (which NIO's encoder sends unframed), `Connection: content-length` (which named the
    /// length as hop-by-hop) and `Transfer-Encoding: Chunked` (which NIO's encoder frames only spelled `chunked`) all
    /// did so; a transfer coding other than chunked is 501. Each attack is followed by an ordinary request on the same
    /// upstream connection: the upstream answers in order, so a hidden request would have been served by then.
    @Test func aBodyAlwaysReachesTheUpstreamFramed() async throws {
        try await withProxy { base, client in
            let port = Self.port(of: base)
            let hidden = "GET /up/smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
            let chunk = String(hidden.utf8.count, radix: 16)
            let attacks = [
                ("TRACE /echo HTTP/1.1\r\nHost: test\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)", nil),
                ("GET /echo HTTP/1.1\r\nHost: test\r\nConnection: content-length\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)", nil),
                ("DELETE /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: Chunked\r\n\r\n\(chunk)\r\n\(hidden)\r\n0\r\n\r\n", nil),
                ("GET /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\(chunk)\r\n\(hidden)\r\n0\r\n\r\n", "501"),
            ]
            for (attack, status) in attacks {
                let shape = attack.split(separator: "\r\n\r\n").first ?? ""
                let connection = try await RawHTTPConnection(port: port)
                try await connection.send(attack)
                try await connection.wait(for: "the whole answer to \(shape)") { received, closed in
                    closed || RawHTTPConnection.isComplete(received)
                }
                let received = connection.received
                if let status {
                    #expect(received.hasPrefix("HTTP/1.1 \(status)") && received.contains(#"{"error":"#), "\(shape): \(received.prefix(200))")
                } else {
                    #expect(received.hasPrefix("HTTP/1.1 "), "\(shape): \(received.prefix(200))")
                }
                #expect(!received.contains("smuggled"), "\(shape): \(received.prefix(300))")
                await connection.close()
                let (next, _, body) = try await get(client, base + "/echo")
                #expect(next == .ok && String(buffer: body).contains(#""uri""#), "after \(shape): \(next) \(String(buffer: body).prefix(200))")
                #expect(Self.smuggled.withLockedValue { $0 } == 0, "\(shape) reached the upstream as a request of its own")
            }
        }
    }

    /// What the HTTP parser refuses is answered in JSON, as every other error (NIO's own handler sends an empty 400): a
    /// control character in a header value is 400, a method token no HTTP parser knows is 501; the connection closes.
    @Test func requestsTheParserRefusesGetAJSONError() async throws {
        try await withProxy { base, _ in
            let port = Self.port(of: base)
            let cases = [
                ("GET /echo HTTP/1.1\r\nHost: test\r\nIdempotency-Key: a\u{01}b\r\n\r\n", "400", "Malformed HTTP request"),
                ("FOO /echo HTTP/1.1\r\nHost: test\r\n\r\n", "501", "Method not implemented"),
            ]
            for (request, status, message) in cases {
                let connection = try await RawHTTPConnection(port: port)
                try? await connection.send(request)
                try await connection.wait(for: "the answer and the close") { _, closed in closed }
                let received = connection.received
                #expect(received.hasPrefix("HTTP/1.1 \(status)"), "\(received.prefix(120))")
                #expect(received.lowercased().contains("content-type: application/json"))
                #expect(received.hasSuffix(#"{"error":"\#(message)"}"#), "\(received)")
                #expect(!received.contains("bodyBytes"), "reached the upstream")
                await connection.close()
            }
        }
    }

    /// An upstream that reads a request and hangs up without answering; counts the connections that sent it anything.
    final class HangUp: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let requests: NIOLockedValueBox<Int>
        var seen = false
        init(requests: NIOLockedValueBox<Int>) { self.requests = requests }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if !seen { requests.withLockedValue { $0 += 1 } }
            seen = true
            context.close(promise: nil)
        }
    }

    struct HangUpRouter: ProxyRouter {
        let port: Int
        func route(_ head: HTTPRequestHead, request: ProxyRequestInfo) -> ProxyRoute {
            .decided(.forward(ProxyUpstream(name: "hangup", host: "127.0.0.1", port: port), target: head.uri))
        }
    }

    @Test func aPostThatMayHaveReachedTheUpstreamIsNeverSentAgain() async throws {
        let requests = NIOLockedValueBox(0)
        let upstream = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(HangUp(requests: requests)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { upstream.close(promise: nil) }
        let port = upstream.localAddress!.port!
        try await RunningService.with([
            { onServerRunning in
                ProxyServer(
                    configuration: .init(port: 0), router: HangUpRouter(port: port), logger: Logger(label: "proxy"), onServerRunning: onServerRunning)
            }
        ]) { proxyPorts in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                var post = HTTPClientRequest(url: "http://127.0.0.1:\(proxyPorts[0])/charge")
                post.method = .POST
                post.body = .bytes(ByteBuffer(string: #"{"amount":10}"#))
                let response = try await client.execute(post, timeout: .seconds(10))
                #expect(response.status == .badGateway)
                _ = try await response.body.collect(upTo: 1 << 16)
                // The upstream saw it once: the proxy did not send it again, here or anywhere.
                #expect(requests.withLockedValue { $0 } == 1)
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
    }
}

// MARK: Tracing

extension ProxyServerTests {
    /// What one traced request through the proxy shows: the trace context the upstream got (`traceparent|tracestate`),
    /// and the `traceresponse` the client got.
    func tracedRequest(
        _ client: HTTPClient, _ base: String, parent: String, traceState: [String] = ["vendor=1"]
    ) async throws -> (sent: String, answered: String) {
        let (status, headers, body) = try await get(
            client, base + "/traced", headers: [("traceparent", parent)] + traceState.map { ("tracestate", $0) })
        #expect(status == .ok)
        return (String(buffer: body), try #require(headers.first(name: "traceresponse")))
    }

    static let clientParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    /// OTLPTracer's short path: the span starts straight from the headers and is exported with its HTTP summary.
    @Test func theServerSpanOfTheOTLPTracerContinuesTheClientsTraceAndIsExported() async throws {
        let receiver = OTLPTracingTests.Receiver()
        let seen = NIOLockedValueBox<(forwarded: TraceSpanContext?, down: TraceSpanContext?, base: String)>((nil, nil, ""))
        try await RunningService.with([receiver.builder]) { receiverPorts in
            var configuration = TracingConfiguration(endpoint: "http://127.0.0.1:\(receiverPorts[0])/v1/traces", serviceName: "shop-gateway")
            configuration.scheduleDelay = .milliseconds(50)
            let (tracer, exporter) = OTLPTracing.make(configuration: configuration, logger: Logger(label: "otlp"))
            try await OTLPTracingTests.running(exporter) {
                try await withProxy(tracer: tracer) { base, client in
                    let (sent, answered) = try await tracedRequest(client, base, parent: Self.clientParent)
                    // The upstream got the proxy's span as its parent, with the client's tracestate; the client got the
                    // same span in traceresponse.
                    #expect(sent == answered + "|vendor=1")
                    let span = try #require(TraceSpanContext(traceparent: answered))
                    #expect(span.traceID.hex == "4bf92f3577b34da6a3ce929d0e0e4736" && span.spanID.hex != "00f067aa0ba902b7" && span.sampled)
                    let (downStatus, downHeaders, _) = try await get(client, base + "/down")
                    #expect(downStatus == .serviceUnavailable)
                    let down = try #require(downHeaders.first(name: "traceresponse").flatMap { TraceSpanContext(traceparent: $0) })
                    seen.withLockedValue { $0 = (span, down, base) }
                    // An unsampled client: the decision goes on, nothing is exported.
                    let (quietSent, quietAnswered) = try await tracedRequest(
                        client, base, parent: "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                    #expect(quietAnswered.hasSuffix("-00") && quietSent.hasPrefix(quietAnswered))
                    // Two tracestate headers are one list (W3C).
                    let (joinedSent, joinedAnswered) = try await tracedRequest(
                        client, base, parent: "00-6bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", traceState: ["a=1", "b=2"]
                    )
                    #expect(joinedSent == joinedAnswered + "|a=1,b=2")
                    // A traceparent that is not W3C (upper case) starts a new trace, and the client's tracestate does not
                    // go on with it.
                    let (restartedSent, restartedAnswered) = try await tracedRequest(
                        client, base, parent: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00", traceState: ["vendor=1"]
                    )
                    #expect(restartedSent == restartedAnswered + "|" && !restartedAnswered.contains("4bf92f3577b34da6a3ce929d0e0e4736"))
                }
            }
        }
        // The proxy has stopped (every span ended) and the exporter with it (every ended span sent): the two sampled
        // requests and the restarted trace are all the receiver got.
        let (forwardedContext, downContext, base) = seen.withLockedValue { $0 }
        let span = try #require(forwardedContext)
        let down = try #require(downContext)
        let spans = try receiver.spans
        #expect(spans.count == 3, "\(spans.map(\.traceID))")
        let forwarded = try #require(spans.first { $0.spanID == span.spanID.hex })
        #expect(forwarded.name == "GET gateway" && forwarded.kind == 2 && forwarded.parentSpanID == "00f067aa0ba902b7")
        #expect(forwarded.traceState == "vendor=1")
        #expect(forwarded.attributes["http.request.method"] == .string("GET"))
        #expect(forwarded.attributes["http.response.status_code"] == .int(200))
        #expect(forwarded.attributes["peer.service"] == .string("stub"))
        #expect(forwarded.attributeEntries == 4)
        guard case .string(let address) = forwarded.attributes["server.address"] else {
            Issue.record("no server.address: \(forwarded.attributes)")
            return
        }
        #expect(address.hasPrefix("127.0.0.1:") && !base.hasSuffix(address.dropFirst("127.0.0.1".count)))
        #expect(forwarded.statusCode == 0 && forwarded.endNanoseconds >= forwarded.startNanoseconds)
        // A request without a traceparent starts a trace; a 503 is an error.
        let failed = try #require(spans.first { $0.spanID == down.spanID.hex })
        #expect(failed.parentSpanID == nil && failed.traceID != forwarded.traceID)
        #expect(failed.attributes["http.response.status_code"] == .int(503) && failed.statusCode == 2)
        #expect(!spans.contains { $0.traceID.hasPrefix("5bf9") || $0.traceID.hasPrefix("6bf9") }, "unsampled traces stay unexported")
    }

    /// Any other tracer goes through ServiceContext, extract and inject: the same outcome.
    @Test func anyOtherTracerGivesTheSameServerSpan() async throws {
        let tracer = W3CInMemoryTracer()
        try await withProxy(tracer: tracer) { base, client in
            let (sent, answered) = try await tracedRequest(client, base, parent: Self.clientParent)
            // This tracer has no tracestate of its own: the client's goes on unchanged.
            #expect(sent == answered + "|vendor=1")
            let (downStatus, _, _) = try await get(client, base + "/down")
            #expect(downStatus == .serviceUnavailable)
            // The span ends once the response is written, which the client may see first.
            try await eventually("both spans ended") { tracer.finishedSpans.count >= 2 }
            let spans = tracer.finishedSpans
            #expect(spans.count == 2)
            let forwarded = try #require(spans.first { answered.contains($0.spanID) })
            #expect(forwarded.operationName == "GET gateway" && forwarded.kind == .server)
            #expect(forwarded.traceID == "4bf92f3577b34da6a3ce929d0e0e4736" && forwarded.parentSpanID == "00f067aa0ba902b7")
            #expect(forwarded.attributes["http.request.method"]?.toSpanAttribute() == .string("GET"))
            #expect(forwarded.attributes["http.response.status_code"]?.toSpanAttribute() == .int64(200))
            #expect(forwarded.attributes["peer.service"]?.toSpanAttribute() == .string("stub"))
            let failed = try #require(spans.first { $0.spanID != forwarded.spanID })
            #expect(failed.attributes["http.response.status_code"]?.toSpanAttribute() == .int64(503) && failed.status?.code == .error)
        }
    }
}
