import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceCore

/// One downstream (client) connection: routes each request, forwards it over a pooled upstream connection with its
/// body streamed, and streams the response back. Requests on a connection are handled one at a time
/// (`HTTPServerPipelineHandler` sits in front and holds pipelined requests back).
///
/// What happens when is decided by ``ProxyConnectionStateMachine``: this handler turns NIO's callbacks into its events
/// and carries out the actions it answers. It keeps only what the machine has no say over: the request head, the
/// headers to add, the span and the response timer.
final class ProxyServerHandler: ChannelInboundHandler, UpstreamResponseDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// What the handler keeps of the exchange in progress (a class: shared by the callbacks, never copied).
    final class Exchange {
        let head: HTTPRequestHead
        let correlationID: String
        /// When the head arrived, and when the client's deadline (if it sent one shorter than the proxy's) passes.
        let arrived = NIODeadline.now()
        var clientDeadline: NIODeadline?
        /// Headers the router adds to the upstream's response.
        var responseHeaders: HTTPHeaders = [:]
        /// The upstream's paths in location headers, mapped back to the client's.
        var locations: ProxyPathRewrite?
        /// The response's status, once known.
        var status: HTTPResponseStatus?
        /// Whether the upstream lets its connection be reused after this response.
        var upstreamKeepAlive = true
        /// The request's server span (none when no tracer is installed).
        var span: (any HTTPServerSpan)?
        /// The span's trace context as headers (`traceparent`, `tracestate`), made once: sent upstream, and answered in
        /// `traceresponse`.
        var traceHeaders: [(String, String)] = []
        /// The upstream the span reports (set when the request is forwarded).
        var spanUpstream: ProxyUpstream?

        init(head: HTTPRequestHead, correlationID: String) {
            self.head = head
            self.correlationID = correlationID
        }
    }

    let router: any ProxyRouter
    let pool: UpstreamPool
    let configuration: ProxyServerConfiguration
    let logger: Logger
    private var context: ChannelHandlerContext?
    private var machine: ProxyConnectionStateMachine<UpstreamConnection>
    private var exchange: Exchange?
    /// The response timer: from the moment the whole request has been sent upstream.
    private var timeout: Scheduled<Void>?
    /// Why the last upstream connection could not be made (for the log).
    private var connectError = ""
    private var clientAddress = ""

    /// Starts each request's server span; nil when no tracer is installed.
    let tracer: (any HTTPServerSpanTracer)?

    init(router: any ProxyRouter, pool: UpstreamPool, configuration: ProxyServerConfiguration, tracer: (any HTTPServerSpanTracer)?, logger: Logger) {
        self.tracer = tracer
        self.router = router
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
        self.machine = ProxyConnectionStateMachine(maxBodyBytes: configuration.maxBodyBytes)
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
            // A TRACE has no content (RFC 9110 §9.3.8) and NIO's encoder sends none of its framing upstream: what a
            // client sends anyway is dropped here, or it would reach the upstream as the start of another request.
            if exchange?.head.method == .TRACE { return }
            perform(machine.requestBody(buffer))
        case .end:
            perform(machine.requestEnd())
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure: stop reading the upstream response while the client cannot keep up.
        machine.connection?.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(machine.clientClosed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read = event, machine.shouldCloseWhenIdle() {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func receiveHead(_ head: HTTPRequestHead) {
        let correlationID = ProxyHeaders.correlationID(head.headers, generator: &pool.requestIDs)
        let exchange = Exchange(head: head, correlationID: correlationID)
        // A server span continuing the client's trace; its context goes upstream in `traceparent`. Without a tracer
        // (checked once per connection) nothing at all is done.
        if let tracer {
            let span = tracer.startHTTPServerSpan(Self.spanName(head.method), requestHeaders: head.headers)
            exchange.traceHeaders = span.traceHeaders
            exchange.span = span
        }
        self.exchange = exchange
        let action = machine.requestHead(
            keepAlive: head.isKeepAlive, declaredLength: head.headers.first(name: "content-length").flatMap(Int.init),
            replayable: ProxyHeaders.isReplayable(head)
        )
        guard case .route = action else { return perform(action) }
        let id = machine.exchangeID
        // RFC 9112 §3.2: an HTTP/1.1 request without a Host, or with more than one, is refused.
        var hosts = 0
        for (name, value) in head.headers where name.utf8.count == 4 && name.lowercased() == "host" {
            hosts += value.utf8.contains(UInt8(ascii: ",")) ? 2 : 1
        }
        if (head.version.minor >= 1 && hosts == 0) || hosts > 1 {
            let message = hosts == 0 ? "Missing Host header" : "More than one Host header"
            return perform(machine.respondLocally(.json(.badRequest, #"{"error":"\#(message)"}"#), exchange: id))
        }
        // RFC 9112 §6.1: chunked is the only transfer coding the proxy knows; another before it (`gzip, chunked`) is
        // 501. (One that does not end in chunked leaves the body's length unknown: the parser refuses it with a 400.)
        if let codings = ProxyHeaders.transferCodings(head.headers), codings.count > 1, codings.last == "chunked" {
            return perform(machine.respondLocally(.json(.notImplemented, #"{"error":"Transfer coding not implemented"}"#), exchange: id))
        }
        switch router.route(head, request: ProxyRequestInfo(correlationID: correlationID, clientAddress: clientAddress)) {
        case .decided(let decision):
            apply(decision, exchange: id)
        case .deferred(let decide):
            let eventLoop = pool.eventLoop
            let handler = NIOLoopBound(self, eventLoop: eventLoop)
            Task {
                let decision = await decide()
                eventLoop.execute { handler.value.apply(decision, exchange: id) }
            }
        }
    }

    // MARK: Decisions

    private func apply(_ decision: ProxyDecision, exchange id: Int) {
        switch decision {
        case .respond(let response):
            perform(machine.respondLocally(response, exchange: id))
        case .handle(let local):
            perform(machine.handleLocally(local, exchange: id))
        case .forward(let upstream, let target, let responseHeaders, let locations):
            guard machine.routedTo(upstream, exchange: id), let exchange else {
                // Nobody waits for this decision any more; the upstream it picked must still be given back.
                router.finished(upstream, outcome: .abandoned)
                return
            }
            exchange.responseHeaders = responseHeaders
            exchange.locations = locations
            exchange.spanUpstream = upstream
            var head = HTTPRequestHead(version: .http1_1, method: exchange.head.method, uri: target, headers: exchange.head.headers)
            ProxyHeaders.prepareForwardedRequest(&head, correlationID: exchange.correlationID, clientAddress: clientAddress)
            // The deadline travels: the upstream gets the configured timeout, or what the client allows if less.
            let (budget, text) = pool.defaultBudget
            if let value = exchange.head.headers.first(name: RequestDeadline.headerName) {
                if let client = RequestDeadline.milliseconds(value), client < budget {
                    // The client's deadline counts from its request's arrival: time spent here is taken off.
                    let deadline = exchange.arrived + .milliseconds(Int64(client))
                    let left = (deadline - .now()).nanoseconds / 1_000_000
                    guard left > 0 else {
                        return perform(
                            machine.respondLocally(
                                .json(.gatewayTimeout, #"{"error":"Deadline exceeded before the request was forwarded"}"#), exchange: id))
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
                if !machine.requestEnded, exchange.head.version.minor >= 1 {
                    context?.writeAndFlush(
                        wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: .continue))), promise: nil
                    )
                }
            }
            // With a tracer, the trace headers are the span's alone: a client's `tracestate` goes on only in them (not
            // when the span started a new trace, e.g. from an invalid `traceparent`).
            if !exchange.traceHeaders.isEmpty { head.headers.remove(name: "tracestate") }
            for (name, value) in exchange.traceHeaders { head.headers.replaceOrAdd(name: name, value: value) }
            perform(machine.forward(head, exchange: id))
        }
    }

    // MARK: Actions

    private func perform(_ action: ProxyConnectionStateMachine<UpstreamConnection>.Action) {
        switch action {
        case .none, .route:
            break
        case .respond(let response, let close, let finish, let settlement, let abandoned):
            settle(settlement)
            if let abandoned { abandon(abandoned) }
            respond(response, close: close, finish: finish)
        case .runLocal(let local, let body):
            let eventLoop = pool.eventLoop
            let handler = NIOLoopBound(self, eventLoop: eventLoop)
            let id = machine.exchangeID
            Task {
                let response = await local(body)
                eventLoop.execute { handler.value.perform(handler.value.machine.localResponse(response, exchange: id)) }
            }
        case .connect(let upstream, let fresh):
            timeout?.cancel()
            connect(to: upstream, fresh: fresh)
        case .flush(let parts, let connection, let startTimer):
            connection.handler.delegate = self
            if let context, !context.channel.isWritable {
                try? connection.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
            }
            for part in parts { connection.channel.write(part, promise: nil) }
            connection.channel.flush()
            if startTimer { startResponseTimer() }
        case .release(let connection):
            pool.release(connection)
        case .send(let part, let connection):
            connection.channel.writeAndFlush(part, promise: nil)
        case .sendEnd(let connection):
            connection.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            startResponseTimer()
        case .findAlternative(let settlement, let tried):
            settle(settlement)
            let next = router.alternative(after: tried)
            let failed = tried.last?.name ?? ""
            if let next {
                logger.debug("Upstream unreachable; trying another instance", metadata: ["upstream": "\(failed)", "error": "\(connectError)"])
            } else {
                logger.warning(
                    "Upstream unreachable",
                    metadata: ["upstream": "\(failed)", "error": "\(connectError)", "correlationId": "\(exchange?.correlationID ?? "")"]
                )
            }
            perform(machine.connectAlternative(next, exchange: machine.exchangeID))
        case .writeHead:
            break  // written by `upstreamResponse`, which has the head
        case .endResponse(let connection, let reuse, let close, let finish, let settlement):
            timeout?.cancel()
            settle(settlement)
            if reuse { pool.release(connection) } else { abandon(connection) }
            // Taken out before the end is written: writing it lets a pipelined request in, which starts its own.
            let finished = finish ? exchange : nil
            if finish { exchange = nil }
            defer { if let finished { endSpan(finished) } }
            if !close {
                context?.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                context?.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [weak self] _ in
                    self?.context?.close(promise: nil)
                }
            }
        case .finish:
            finishExchange()
        case .closeClient(let settlement, let abandoned):
            timeout?.cancel()
            settle(settlement)
            if let abandoned { abandon(abandoned) }
            context?.close(promise: nil)
        case .teardown(let abandoned, let settlement, let hadExchange):
            timeout?.cancel()
            if let abandoned { abandon(abandoned) }
            settle(settlement)
            if hadExchange { finishExchange() }
        }
    }

    /// Tells the router how the exchange with its chosen upstream ended (the machine hands each settlement out once).
    private func settle(_ settlement: ProxyConnectionStateMachine<UpstreamConnection>.Settlement?) {
        if let settlement { router.finished(settlement.upstream, outcome: settlement.outcome) }
    }

    private func connect(to upstream: ProxyUpstream, fresh: Bool) {
        let pool = self.pool
        let id = machine.exchangeID
        pool.acquire(upstream, fresh: fresh) { [weak self] result in
            guard let self else {
                if case .success(let connection) = result { pool.release(connection) }
                return
            }
            switch result {
            case .success(let connection):
                self.perform(self.machine.connected(connection, exchange: id))
            case .failure(let error):
                self.connectError = "\(error)"
                self.perform(self.machine.connectFailed(exchange: id))
            }
        }
    }

    private func startResponseTimer() {
        timeout?.cancel()
        let loop = pool.eventLoop.assumeIsolated()
        let id = machine.exchangeID
        let clientDeadline = exchange?.clientDeadline
        let fire = { [weak self] in
            guard let self else { return }
            self.perform(self.machine.timedOut(clientDeadline: clientDeadline != nil, exchange: id))
        }
        if let clientDeadline {
            timeout = loop.scheduleTask(deadline: clientDeadline, fire)
        } else {
            timeout = loop.scheduleTask(in: configuration.responseTimeout, fire)
        }
    }

    // MARK: Upstream

    func upstreamResponse(_ part: HTTPClientResponsePart) {
        guard let context, let exchange else { return }
        switch part {
        case .head(var head):
            // Framing is redone for the client: NIO's encoder adds chunked encoding for HTTP/1.1 when there is no
            // content-length; an HTTP/1.0 client gets the body delimited by closing the connection.
            let delimitedByClose = exchange.head.version.minor == 0 && exchange.head.method != .HEAD && !head.headers.contains(name: "content-length")
            guard case .writeHead(let keepAlive) = machine.responseHead(delimitedByClose: delimitedByClose) else { return }
            exchange.upstreamKeepAlive = head.isKeepAlive
            exchange.status = head.status
            for (name, value) in exchange.responseHeaders { head.headers.replaceOrAdd(name: name, value: value) }
            if let traceparent = exchange.traceparent { head.headers.replaceOrAdd(name: "traceresponse", value: traceparent) }
            head.headers.remove(name: "transfer-encoding")
            ProxyHeaders.prepareForwardedResponse(
                &head.headers, correlationID: exchange.correlationID, keepAlive: keepAlive, locations: exchange.locations,
                server: configuration.serverName)
            if keepAlive, exchange.head.version.minor == 0 {
                head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: head.status, headers: head.headers))), promise: nil)
        case .body(let buffer):
            if machine.isResponding { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        case .end:
            perform(machine.responseEnd(status: exchange.status ?? .ok, upstreamKeepAlive: exchange.upstreamKeepAlive))
        }
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    func upstreamClosed() {
        perform(machine.upstreamClosed(reused: machine.connection?.reused ?? false))
    }

    // MARK: Helpers

    private func abandon(_ upstream: UpstreamConnection) {
        upstream.handler.delegate = nil
        upstream.channel.close(promise: nil)
    }

    /// Writes a complete response of the proxy's own; `finish`: the exchange is over with it.
    private func respond(_ response: ProxyResponse, close: Bool, finish: Bool) {
        guard let context, let exchange else { return }
        timeout?.cancel()
        if exchange.status == nil { exchange.status = response.status }
        // Taken out before the end is written: writing it lets a pipelined request in, which starts its own.
        self.exchange = finish ? nil : exchange
        defer { if finish { endSpan(exchange) } }
        var headers = response.headers
        headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        headers.replaceOrAdd(name: ProxyHeaders.correlationHeader, value: exchange.correlationID)
        if let traceparent = exchange.traceparent { headers.replaceOrAdd(name: "traceresponse", value: traceparent) }
        if close { headers.replaceOrAdd(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [weak self] _ in
            guard close else { return }
            self?.context?.close(promise: nil)
        }
    }

    /// The exchange is over: its span ends.
    private func finishExchange() {
        guard let exchange else { return }
        self.exchange = nil
        endSpan(exchange)
    }

    /// The exchange is over: one log line for it (the guide's request log), and its span ends.
    private func endSpan(_ exchange: Exchange) {
        if logger.logLevel <= .info { logRequest(exchange) }
        guard let span = exchange.span else { return }
        span.end(
            HTTPSpanSummary(
                method: exchange.head.method.rawValue, statusCode: exchange.status.map { Int($0.code) },
                serverAddress: exchange.spanUpstream?.address, peerService: exchange.spanUpstream?.name
            )
        )
    }
}

extension ProxyServerHandler {
    /// Method, route template, status, duration, upstream, and the correlation and trace ids, at info; health checks and
    /// scrapes at debug.
    func logRequest(_ exchange: Exchange) {
        let uri = exchange.head.uri
        let quiet = uri.hasPrefix("/health") || uri.hasPrefix("/metrics")
        guard !quiet || logger.logLevel <= .debug else { return }
        let elapsed = (NIODeadline.now() - exchange.arrived).nanoseconds
        var metadata: Logger.Metadata = [
            "method": .string(exchange.head.method.rawValue),
            "route": .string(router.routeName(exchange.head)),
            "status": .stringConvertible(exchange.status.map { Int($0.code) } ?? 0),
            "durationMs": .string(Self.milliseconds(elapsed)),
            "correlationId": .string(exchange.correlationID),
        ]
        if let upstream = exchange.spanUpstream { metadata["upstream"] = .string(upstream.name) }
        // traceparent: 00-<32 hex trace id>-<16 hex span id>-<flags>
        if let traceparent = exchange.traceparent, traceparent.utf8.count >= 52 {
            let start = traceparent.index(traceparent.startIndex, offsetBy: 3)
            metadata["traceId"] = .string(String(traceparent[start..<traceparent.index(start, offsetBy: 32)]))
        }
        logger.log(level: quiet ? .debug : .info, "Request", metadata: metadata)
    }

    /// Nanoseconds as milliseconds with one decimal, without Foundation's formatter.
    static func milliseconds(_ nanoseconds: Int64) -> String {
        let tenths = max(0, nanoseconds) / 100_000
        return "\(tenths / 10).\(tenths % 10)"
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
