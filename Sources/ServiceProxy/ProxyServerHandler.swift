import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceCore

/// One downstream (client) connection: routes each request, forwards it over a pooled upstream connection with its
/// body streamed, and streams the response back. Requests on a connection are handled one at a time
/// (`HTTPServerPipelineHandler` sits in front and holds pipelined requests back).
final class ProxyServerHandler: ChannelInboundHandler, UpstreamResponseDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The exchange in progress.
    final class Exchange {
        let head: HTTPRequestHead
        let keepAlive: Bool
        let correlationID: String
        /// Parts not yet written upstream (the upstream is not connected, or the decision is pending).
        var pending: [HTTPClientRequestPart] = []
        /// A copy of an idempotent, bodiless request, kept to resend once if a reused connection was stale.
        var replay: [HTTPClientRequestPart]?
        var upstream: UpstreamConnection?
        var bodyBytes = 0
        var requestEnded = false
        var responseStarted = false
        var responseEnded = false
        /// The answer is decided (a local response, or an abandoned forward): ignore the rest of the request body.
        var discardingBody = false
        var timeout: Scheduled<Void>?
        /// Whether the upstream lets its connection be reused after this response.
        var upstreamKeepAlive = true
        /// Whether the client connection closes once this response is written.
        var closeAfterResponse: Bool
        /// The upstream the router chose, until the router has heard how the exchange ended.
        var forwardedTo: ProxyUpstream?
        /// Upstreams this request could not connect to.
        var unreachable: [ProxyUpstream] = []
        /// When the head arrived, and when the client's deadline (if it sent one shorter than the proxy's) passes.
        let arrived = NIODeadline.now()
        var clientDeadline: NIODeadline?
        /// Headers the router adds to the upstream's response.
        var responseHeaders: HTTPHeaders = [:]
        /// The upstream's response status, once its head arrived.
        var status: HTTPResponseStatus?
        /// The request's server span (none when no tracer is installed).
        var span: (any HTTPServerSpan)?
        /// The span's trace context as headers (`traceparent`, `tracestate`), made once: sent upstream, and answered in
        /// `traceresponse`.
        var traceHeaders: [(String, String)] = []
        /// The upstream the span reports (set when the request is forwarded).
        var spanUpstream: ProxyUpstream?
        /// A local handler waiting for the whole body, and the body so far.
        var local: (@Sendable (ByteBuffer) async -> ProxyResponse)?
        var localBody = ByteBuffer()

        init(head: HTTPRequestHead, keepAlive: Bool, correlationID: String) {
            self.head = head
            self.keepAlive = keepAlive
            self.correlationID = correlationID
            self.closeAfterResponse = !keepAlive
        }
    }

    let router: any ProxyRouter
    let pool: UpstreamPool
    let configuration: ProxyServerConfiguration
    let logger: Logger
    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    private var clientAddress = ""

    /// Starts each request's server span; nil when no tracer is installed.
    let tracer: (any HTTPServerSpanTracer)?

    init(router: any ProxyRouter, pool: UpstreamPool, configuration: ProxyServerConfiguration, tracer: (any HTTPServerSpanTracer)?, logger: Logger) {
        self.tracer = tracer
        self.router = router
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.clientAddress = context.channel.remoteAddress?.ipAddress ?? ""
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Downstream

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiveHead(head)
        case .body(let buffer):
            receiveBody(buffer)
        case .end:
            receiveEnd()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure: stop reading the upstream response while the client cannot keep up.
        exchange?.upstream?.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange {
            exchange.timeout?.cancel()
            if let upstream = exchange.upstream, !exchange.responseEnded {
                upstream.handler.delegate = nil
                upstream.channel.close(promise: nil)
            }
            settle(exchange, .abandoned)
            endSpan(exchange)
            self.exchange = nil
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Nothing read for the idle period: close an idle keep-alive connection or a stalled upload (slowloris); a
        // response still streaming to a client that has sent everything is left alone.
        if case IdleStateHandler.IdleStateEvent.read = event, exchange == nil || exchange?.requestEnded == false {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func receiveHead(_ head: HTTPRequestHead) {
        let correlationID = ProxyHeaders.correlationID(head.headers, generator: &pool.requestIDs)
        let exchange = Exchange(head: head, keepAlive: head.isKeepAlive, correlationID: correlationID)
        self.exchange = exchange
        // A server span continuing the client's trace; its context goes upstream in `traceparent`. Without a tracer
        // (checked once per connection) nothing at all is done.
        if let tracer {
            let span = tracer.startHTTPServerSpan(Self.spanName(head.method), requestHeaders: head.headers)
            exchange.traceHeaders = span.traceHeaders
            exchange.span = span
        }

        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > configuration.maxBodyBytes {
            respond(.json(.payloadTooLarge, #"{"error":"Request body too large","limit":\#(configuration.maxBodyBytes)}"#), closeAfter: true)
            return
        }
        switch router.route(head, request: ProxyRequestInfo(correlationID: correlationID, clientAddress: clientAddress)) {
        case .decided(let decision):
            apply(decision)
        case .deferred(let decide):
            let eventLoop = pool.eventLoop
            let target = NIOLoopBound((handler: self, exchange: exchange), eventLoop: eventLoop)
            Task {
                let decision = await decide()
                eventLoop.execute {
                    let (handler, exchange) = target.value
                    guard handler.exchange === exchange, !exchange.responseEnded else {
                        // Nobody waits for this decision any more; an upstream it picked must still be given back.
                        if case .forward(let upstream, _, _) = decision { handler.router.finished(upstream, outcome: .abandoned) }
                        return
                    }
                    handler.apply(decision)
                }
            }
        }
    }

    private func receiveBody(_ buffer: ByteBuffer) {
        guard let exchange, !exchange.discardingBody else { return }
        exchange.bodyBytes += buffer.readableBytes
        if exchange.bodyBytes > configuration.maxBodyBytes {
            exchange.replay = nil
            abandonUpstream(exchange)
            if exchange.responseStarted {
                context?.close(promise: nil)
            } else {
                respond(.json(.payloadTooLarge, #"{"error":"Request body too large","limit":\#(configuration.maxBodyBytes)}"#), closeAfter: true)
            }
            return
        }
        exchange.replay = nil
        if exchange.local != nil {
            var buffer = buffer
            exchange.localBody.writeBuffer(&buffer)
            return
        }
        let part = HTTPClientRequestPart.body(.byteBuffer(buffer))
        if let upstream = exchange.upstream {
            upstream.channel.writeAndFlush(part, promise: nil)
        } else {
            exchange.pending.append(part)
        }
    }

    private func receiveEnd() {
        guard let exchange else { return }
        exchange.requestEnded = true
        if exchange.discardingBody {
            finishIfComplete(exchange)
            return
        }
        exchange.replay?.append(.end(nil))
        if let local = exchange.local {
            runLocal(local, exchange)
        } else if let upstream = exchange.upstream {
            upstream.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            startResponseTimer(exchange)
        } else {
            exchange.pending.append(.end(nil))
        }
    }

    /// The response timeout runs from the moment the whole request has been sent upstream.
    private func startResponseTimer(_ exchange: Exchange) {
        exchange.timeout?.cancel()
        let loop = pool.eventLoop.assumeIsolated()
        if let deadline = exchange.clientDeadline {
            exchange.timeout = loop.scheduleTask(deadline: deadline) { [weak self] in self?.upstreamTimedOut(exchange) }
        } else {
            exchange.timeout = loop.scheduleTask(in: configuration.responseTimeout) { [weak self] in self?.upstreamTimedOut(exchange) }
        }
    }

    // MARK: Decisions

    private func apply(_ decision: ProxyDecision) {
        guard let exchange else { return }
        switch decision {
        case .respond(let response):
            respond(response, closeAfter: false)
        case .handle(let local):
            exchange.local = local
            for case .body(.byteBuffer(var buffer)) in exchange.pending { exchange.localBody.writeBuffer(&buffer) }
            exchange.pending.removeAll()
            if exchange.requestEnded { runLocal(local, exchange) }
        case .forward(let upstream, let target, let responseHeaders):
            exchange.forwardedTo = upstream
            exchange.responseHeaders = responseHeaders
            var head = HTTPRequestHead(version: .http1_1, method: exchange.head.method, uri: target, headers: exchange.head.headers)
            ProxyHeaders.prepareForwardedRequest(&head.headers, correlationID: exchange.correlationID, clientAddress: clientAddress)
            // The deadline travels: the upstream gets the configured timeout, or what the client allows if less.
            let (budget, text) = pool.defaultBudget
            if let value = exchange.head.headers.first(name: RequestDeadline.headerName) {
                if let client = RequestDeadline.milliseconds(value), client < budget {
                    // The client's deadline counts from its request's arrival: time spent here is taken off.
                    let deadline = exchange.arrived + .milliseconds(Int64(client))
                    let left = (deadline - .now()).nanoseconds / 1_000_000
                    guard left > 0 else {
                        respond(.json(.gatewayTimeout, #"{"error":"Deadline exceeded before the request was forwarded"}"#), closeAfter: false)
                        return
                    }
                    exchange.clientDeadline = deadline
                    head.headers.replaceOrAdd(name: RequestDeadline.headerName, value: String(left))
                } else {
                    head.headers.replaceOrAdd(name: RequestDeadline.headerName, value: text)
                }
            } else {
                head.headers.add(name: RequestDeadline.headerName, value: text)
            }
            // The proxy answers `Expect: 100-continue` itself: it has decided to take the body, and the upstream's own
            // interim response would be dropped by the client decoder.
            if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                head.headers.remove(name: "expect")
                if !exchange.requestEnded, exchange.head.version.minor >= 1 {
                    context?.writeAndFlush(
                        wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: .continue))), promise: nil
                    )
                }
            }
            // With a tracer, the trace headers are the span's alone: a client's `tracestate` goes on only in them (not
            // when the span started a new trace, e.g. from an invalid `traceparent`).
            if !exchange.traceHeaders.isEmpty { head.headers.remove(name: "tracestate") }
            for (name, value) in exchange.traceHeaders { head.headers.replaceOrAdd(name: name, value: value) }
            exchange.spanUpstream = upstream
            exchange.pending.insert(.head(head), at: 0)
            if ProxyHeaders.isReplayable(exchange.head) {
                exchange.replay = exchange.pending
            }
            connect(exchange, to: upstream, fresh: false)
        }
    }

    /// Runs a local handler with the whole body and answers with its response.
    private func runLocal(_ local: @escaping @Sendable (ByteBuffer) async -> ProxyResponse, _ exchange: Exchange) {
        let body = exchange.localBody
        exchange.local = nil
        exchange.localBody = ByteBuffer()
        let eventLoop = pool.eventLoop
        let target = NIOLoopBound((handler: self, exchange: exchange), eventLoop: eventLoop)
        Task {
            let response = await local(body)
            eventLoop.execute {
                let (handler, exchange) = target.value
                guard handler.exchange === exchange, !exchange.responseEnded else { return }
                handler.respond(response, closeAfter: false)
            }
        }
    }

    /// Tells the router how the exchange with its chosen upstream ended (once).
    private func settle(_ exchange: Exchange, _ outcome: ProxyOutcome) {
        guard let upstream = exchange.forwardedTo else { return }
        exchange.forwardedTo = nil
        router.finished(upstream, outcome: outcome)
    }

    private func connect(_ exchange: Exchange, to upstream: ProxyUpstream, fresh: Bool) {
        let pool = self.pool
        pool.acquire(upstream, fresh: fresh) { [weak self] result in
            guard let self, self.exchange === exchange, !exchange.discardingBody else {
                // Nobody wants the connection any more (the client left, or the answer was already given).
                if case .success(let connection) = result { pool.release(connection) }
                return
            }
            switch result {
            case .success(let connection):
                connection.handler.delegate = self
                exchange.upstream = connection
                if let context = self.context, !context.channel.isWritable {
                    try? connection.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
                }
                let sendsEnd = exchange.pending.contains { if case .end = $0 { true } else { false } }
                for part in exchange.pending { connection.channel.write(part, promise: nil) }
                exchange.pending.removeAll()
                connection.channel.flush()
                if sendsEnd { self.startResponseTimer(exchange) }
            case .failure(let error):
                self.settle(exchange, .unreachable)
                // Nothing was sent: any request may go to another instance.
                exchange.unreachable.append(upstream)
                if let next = self.router.alternative(after: exchange.unreachable) {
                    exchange.forwardedTo = next
                    self.logger.debug(
                        "Upstream unreachable; trying another instance", metadata: ["upstream": "\(upstream.name)", "error": "\(error)"])
                    self.connect(exchange, to: next, fresh: false)
                    return
                }
                self.logger.warning(
                    "Upstream unreachable",
                    metadata: ["upstream": "\(upstream.name)", "error": "\(error)", "correlationId": "\(exchange.correlationID)"]
                )
                self.respond(.json(.serviceUnavailable, #"{"error":"Service unavailable","service":"\#(upstream.name)"}"#), closeAfter: false)
            }
        }
    }

    // MARK: Upstream

    func upstreamResponse(_ part: HTTPClientResponsePart) {
        guard let exchange, let context else { return }
        switch part {
        case .head(var head):
            exchange.responseStarted = true
            exchange.replay = nil
            exchange.upstreamKeepAlive = head.isKeepAlive
            exchange.status = head.status
            for (name, value) in exchange.responseHeaders { head.headers.replaceOrAdd(name: name, value: value) }
            if let traceparent = exchange.traceparent { head.headers.replaceOrAdd(name: "traceresponse", value: traceparent) }
            // Framing is redone for the client: NIO's encoder adds chunked encoding for HTTP/1.1 when there is no
            // content-length; an HTTP/1.0 client gets the body delimited by closing the connection.
            head.headers.remove(name: "transfer-encoding")
            if exchange.head.version.minor == 0, exchange.head.method != .HEAD, !head.headers.contains(name: "content-length") {
                exchange.closeAfterResponse = true
            }
            ProxyHeaders.prepareForwardedResponse(&head.headers, correlationID: exchange.correlationID, keepAlive: !exchange.closeAfterResponse)
            if !exchange.closeAfterResponse, exchange.head.version.minor == 0 {
                head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: head.status, headers: head.headers))), promise: nil)
        case .body(let buffer):
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .end:
            exchange.timeout?.cancel()
            exchange.responseEnded = true
            settle(exchange, .responded(exchange.status ?? .ok))
            if let upstream = exchange.upstream {
                exchange.upstream = nil
                // A connection may be reused only when the whole request was sent and the response came complete.
                if exchange.requestEnded && exchange.upstreamKeepAlive { pool.release(upstream) } else { abandon(upstream) }
            }
            if !exchange.closeAfterResponse {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [weak self] _ in
                    self?.context?.close(promise: nil)
                }
            }
            exchange.discardingBody = true
            finishIfComplete(exchange)
        }
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    func upstreamClosed() {
        guard let exchange, !exchange.responseEnded else { return }
        let upstream = exchange.upstream
        exchange.upstream = nil
        exchange.timeout?.cancel()
        if let upstream, upstream.reused, !exchange.responseStarted, let replay = exchange.replay {
            // The pooled connection was closed by the upstream while idle: resend the idempotent request once, fresh.
            exchange.replay = nil
            exchange.pending = replay
            connect(exchange, to: upstream.upstream, fresh: true)
            return
        }
        settle(exchange, .failed)
        if exchange.responseStarted {
            context?.close(promise: nil)
        } else {
            respond(.json(.badGateway, #"{"error":"Bad gateway","service":"\#(upstream?.upstream.name ?? "")"}"#), closeAfter: false)
        }
    }

    private func upstreamTimedOut(_ exchange: Exchange) {
        guard self.exchange === exchange, !exchange.responseEnded else { return }
        let name = exchange.upstream?.upstream.name ?? ""
        settle(exchange, exchange.clientDeadline == nil ? .failed : .clientDeadline)
        abandonUpstream(exchange)
        if exchange.responseStarted {
            context?.close(promise: nil)
        } else {
            respond(.json(.gatewayTimeout, #"{"error":"Upstream timed out","service":"\#(name)"}"#), closeAfter: false)
        }
    }

    // MARK: Helpers

    private func abandonUpstream(_ exchange: Exchange) {
        settle(exchange, .abandoned)
        exchange.timeout?.cancel()
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            abandon(upstream)
        }
    }

    private func abandon(_ upstream: UpstreamConnection) {
        upstream.handler.delegate = nil
        upstream.channel.close(promise: nil)
    }

    /// Writes a complete local response; the rest of the request body is read and dropped.
    private func respond(_ response: ProxyResponse, closeAfter: Bool) {
        guard let exchange, let context else { return }
        exchange.discardingBody = true
        exchange.responseStarted = true
        exchange.responseEnded = true
        exchange.pending.removeAll()
        settle(exchange, .abandoned)
        if exchange.status == nil { exchange.status = response.status }
        var headers = response.headers
        headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        headers.replaceOrAdd(name: ProxyHeaders.correlationHeader, value: exchange.correlationID)
        if let traceparent = exchange.traceparent { headers.replaceOrAdd(name: "traceresponse", value: traceparent) }
        let close = closeAfter || !exchange.keepAlive
        if close { headers.replaceOrAdd(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [weak self] _ in
            guard close else { return }
            self?.context?.close(promise: nil)
        }
        finishIfComplete(exchange)
    }

    private func finishIfComplete(_ exchange: Exchange) {
        guard exchange.requestEnded, exchange.responseEnded, self.exchange === exchange else { return }
        endSpan(exchange)
        self.exchange = nil
    }

    private func endSpan(_ exchange: Exchange) {
        guard let span = exchange.span else { return }
        exchange.span = nil
        span.end(
            HTTPSpanSummary(
                method: exchange.head.method.rawValue, statusCode: exchange.status.map { Int($0.code) },
                serverAddress: exchange.spanUpstream?.address, peerService: exchange.spanUpstream?.name
            )
        )
    }
}

extension ProxyServerHandler.Exchange {
    /// The request's `traceparent`, for `traceresponse`.
    var traceparent: String? { traceHeaders.first { $0.0 == "traceparent" }?.1 }
}

extension ProxyServerHandler {
    /// The server span's name: a constant for the common methods (no string built per request).
    static func spanName(_ method: HTTPMethod) -> String {
        switch method {
        case .GET: "GET gateway"
        case .POST: "POST gateway"
        case .PUT: "PUT gateway"
        case .PATCH: "PATCH gateway"
        case .DELETE: "DELETE gateway"
        default: "\(method.rawValue) gateway"
        }
    }
}
