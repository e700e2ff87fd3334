import NIOCore
import NIOHTTP1

/// The life of one client connection of the proxy, one exchange at a time, as a state machine: the connection handler
/// turns what happens (a request part, a routing decision, an upstream connection, a response part, a timeout, the
/// client leaving) into events, and each event answers the one thing the handler must do. The machine does no I/O and
/// holds no channel or timer, so every path is tested without sockets (`ProxyConnectionStateMachineTests`); the
/// handler holds only what the machine has no say over (the request head, headers to add, the span, the timer).
///
/// `Connection` is the upstream connection (`UpstreamConnection` in the proxy; any stand-in in tests).
struct ProxyConnectionStateMachine<Connection> {
    /// Where the exchange in progress is.
    enum Phase {
        /// No request in progress (before the first, between keep-alive requests).
        case idle
        /// The request's head is in; its route is being decided.
        case routing
        /// A local handler waits for the whole body.
        case collectingLocal(LocalHandler)
        /// The local handler runs; its response is awaited.
        case runningLocal
        /// An upstream connection is being acquired.
        case connecting
        /// Request parts flow to the upstream; its response has not started.
        case forwarding(Connection)
        /// The upstream's response streams to the client.
        case responding(Connection)
        /// The response is complete; the rest of the request body is read and dropped.
        case answered
        /// The client connection is gone.
        case closed
    }

    typealias LocalHandler = @Sendable (ByteBuffer) async -> ProxyResponse

    /// An upstream the router chose, and how the exchange with it ended: the router hears it exactly once.
    struct Settlement {
        var upstream: ProxyUpstream
        var outcome: ProxyOutcome
    }

    /// What the handler does after an event.
    enum Action {
        case none
        /// Ask the router for this exchange's decision.
        case route
        /// Write this complete response (then close the client connection when `close`); `finish`: the request has
        /// ended too, so the exchange is over. Any upstream connection given is closed, not reused.
        case respond(ProxyResponse, close: Bool, finish: Bool, settle: Settlement?, abandon: Connection?)
        /// Run the local handler with the whole body.
        case runLocal(LocalHandler, ByteBuffer)
        /// Acquire a connection to `upstream` (`fresh`: never a pooled one).
        case connect(ProxyUpstream, fresh: Bool)
        /// Write the parts held back to the new connection; with `startTimer` the whole request is sent.
        case flush([HTTPClientRequestPart], to: Connection, startTimer: Bool)
        /// A connection nobody wants any more (the exchange ended while it was being acquired): back to the pool.
        case release(Connection)
        /// Write one body part upstream.
        case send(HTTPClientRequestPart, to: Connection)
        /// Write the request's end upstream and start the response timer.
        case sendEnd(to: Connection)
        /// Connecting failed: settle, then ask the router for another instance (``connectAlternative(_:)``) or answer 503.
        case findAlternative(settle: Settlement?, tried: [ProxyUpstream])
        /// The upstream's response head: write it to the client (`keepAlive`: the client connection stays open).
        case writeHead(keepAlive: Bool)
        /// The upstream's response is complete: give its connection back (`reuse`) or close it, write the end (then
        /// close the client connection when `close`); `finish` as in ``respond``.
        case endResponse(Connection, reuse: Bool, close: Bool, finish: Bool, settle: Settlement?)
        /// The exchange is over (its last part was the request's end).
        case finish
        /// Close the client connection (a response already started cannot be replaced by an error); close `abandon`.
        case closeClient(settle: Settlement?, abandon: Connection?)
        /// The client connection closed: close `abandon`, settle, end the exchange's span if there was one.
        case teardown(abandon: Connection?, settle: Settlement?, hadExchange: Bool)
    }

    let maxBodyBytes: Int
    private(set) var phase: Phase = .idle
    /// Counts exchanges, so that an answer arriving later (a routing decision, a connection, a local response) is
    /// applied only to the exchange that asked for it.
    private(set) var exchangeID = 0
    private(set) var requestEnded = false
    private var keepAlive = true
    private var closeAfterResponse = false
    private var bodyBytes = 0
    /// Request parts held back while routing or connecting.
    private var pending: [HTTPClientRequestPart] = []
    /// A copy of an idempotent, bodiless request, kept to resend once on a fresh connection if a pooled one turns out
    /// stale; dropped as soon as it may have reached the upstream's application (a response began, a body part went).
    private var replay: [HTTPClientRequestPart]?
    private var localBody = ByteBuffer()
    /// The upstream the router chose, until the router has heard how the exchange ended.
    private var routed: ProxyUpstream?
    /// The upstream being connected to or used, and those this request could not connect to.
    private var target: ProxyUpstream?
    private var unreachable: [ProxyUpstream] = []

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    /// Whether a request is in progress.
    var hasExchange: Bool {
        switch phase {
        case .idle, .closed: false
        default: true
        }
    }

    /// The upstream connection in use, if any (for backpressure).
    var connection: Connection? {
        switch phase {
        case .forwarding(let connection), .responding(let connection): connection
        default: nil
        }
    }

    // MARK: The client's request

    /// A request's head; `declaredLength` is its `content-length`, if any.
    mutating func requestHead(keepAlive: Bool, declaredLength: Int?, replayable: Bool) -> Action {
        guard case .idle = phase else { return .none }
        exchangeID &+= 1
        phase = .routing
        requestEnded = false
        self.keepAlive = keepAlive
        closeAfterResponse = !keepAlive
        bodyBytes = 0
        pending.removeAll(keepingCapacity: true)
        localBody = ByteBuffer()
        replay = replayable ? [] : nil
        routed = nil
        target = nil
        unreachable.removeAll()
        if let declaredLength, declaredLength > maxBodyBytes {
            return respond(.tooLarge(maxBodyBytes), close: true)
        }
        return .route
    }

    mutating func requestBody(_ buffer: ByteBuffer) -> Action {
        switch phase {
        case .idle, .answered, .closed, .runningLocal:
            return .none
        default:
            break
        }
        bodyBytes += buffer.readableBytes
        replay = nil
        if bodyBytes > maxBodyBytes {
            if case .responding(let connection) = phase {
                phase = .answered
                return .closeClient(settle: settle(.abandoned), abandon: connection)
            }
            if case .forwarding(let connection) = phase { return respond(.tooLarge(maxBodyBytes), close: true, abandon: connection) }
            return respond(.tooLarge(maxBodyBytes), close: true)
        }
        switch phase {
        case .routing, .connecting:
            pending.append(.body(.byteBuffer(buffer)))
            return .none
        case .collectingLocal:
            var buffer = buffer
            localBody.writeBuffer(&buffer)
            return .none
        case .forwarding(let connection), .responding(let connection):
            return .send(.body(.byteBuffer(buffer)), to: connection)
        case .idle, .answered, .closed, .runningLocal:
            return .none
        }
    }

    mutating func requestEnd() -> Action {
        guard hasExchange, !requestEnded else { return .none }
        requestEnded = true
        // The copy kept for a resend is the whole request (at routing it is replaced when the head is known).
        replay?.append(.end(nil))
        switch phase {
        case .answered:
            phase = .idle
            return .finish
        case .routing, .connecting:
            pending.append(.end(nil))
            return .none
        case .collectingLocal(let local):
            return runLocal(local)
        case .forwarding(let connection), .responding(let connection):
            return .sendEnd(to: connection)
        case .idle, .closed, .runningLocal:
            return .none
        }
    }

    // MARK: The router's decision

    /// The router answers with a response of its own.
    mutating func respondLocally(_ response: ProxyResponse, exchange: Int) -> Action {
        guard exchange == exchangeID else { return .none }
        switch phase {
        case .routing, .connecting, .collectingLocal, .runningLocal: return respond(response, close: false)
        default: return .none
        }
    }

    /// The router hands the request to a local handler that needs the whole body.
    mutating func handleLocally(_ local: @escaping LocalHandler, exchange: Int) -> Action {
        guard exchange == exchangeID, case .routing = phase else { return .none }
        for case .body(.byteBuffer(var buffer)) in pending { localBody.writeBuffer(&buffer) }
        pending.removeAll(keepingCapacity: true)
        if requestEnded { return runLocal(local) }
        phase = .collectingLocal(local)
        return .none
    }

    /// The router chose `upstream`. From here until it is settled, the router will hear how the exchange ended. Returns
    /// false when the decision comes too late (the exchange is over): the upstream must be given back as abandoned.
    mutating func routedTo(_ upstream: ProxyUpstream, exchange: Int) -> Bool {
        guard exchange == exchangeID, case .routing = phase else { return false }
        routed = upstream
        return true
    }

    /// The request, with `head` as the upstream gets it, goes to the upstream ``routedTo(_:exchange:)`` chose.
    mutating func forward(_ head: HTTPRequestHead, exchange: Int) -> Action {
        guard exchange == exchangeID, case .routing = phase, let upstream = routed else { return .none }
        pending.insert(.head(head), at: 0)
        if replay != nil { replay = pending }
        phase = .connecting
        target = upstream
        return .connect(upstream, fresh: false)
    }

    /// The local handler answered.
    mutating func localResponse(_ response: ProxyResponse, exchange: Int) -> Action {
        guard exchange == exchangeID, case .runningLocal = phase else { return .none }
        return respond(response, close: false)
    }

    // MARK: The upstream

    mutating func connected(_ connection: Connection, exchange: Int) -> Action {
        guard exchange == exchangeID, case .connecting = phase else { return .release(connection) }
        phase = .forwarding(connection)
        var parts: [HTTPClientRequestPart] = []
        swap(&parts, &pending)
        return .flush(parts, to: connection, startTimer: requestEnded)
    }

    /// Connecting to the current target failed (nothing was sent: any request may go to another instance).
    mutating func connectFailed(exchange: Int) -> Action {
        guard exchange == exchangeID, case .connecting = phase, let target else { return .none }
        unreachable.append(target)
        return .findAlternative(settle: settle(.unreachable), tried: unreachable)
    }

    /// The router's answer to ``Action/findAlternative(settle:tried:)``: another instance, or none (503).
    mutating func connectAlternative(_ next: ProxyUpstream?, exchange: Int) -> Action {
        guard exchange == exchangeID, case .connecting = phase else { return .none }
        guard let next else {
            return respond(.json(.serviceUnavailable, #"{"error":"Service unavailable","service":"\#(target?.name ?? "")"}"#), close: false)
        }
        routed = next
        target = next
        return .connect(next, fresh: false)
    }

    /// The upstream's response head; `delimitedByClose`: the client (HTTP/1.0) learns the body's end only by the
    /// connection closing.
    mutating func responseHead(delimitedByClose: Bool) -> Action {
        guard case .forwarding(let connection) = phase else { return .none }
        phase = .responding(connection)
        replay = nil
        if delimitedByClose { closeAfterResponse = true }
        return .writeHead(keepAlive: !closeAfterResponse)
    }

    /// Whether a response body part goes to the client.
    var isResponding: Bool {
        if case .responding = phase { return true }
        return false
    }

    /// The upstream's response ended; `upstreamKeepAlive`: the upstream lets its connection be reused.
    mutating func responseEnd(status: HTTPResponseStatus, upstreamKeepAlive: Bool) -> Action {
        guard case .responding(let connection) = phase else { return .none }
        let settlement = settle(.responded(status))
        // A connection may be reused only when the whole request was sent and the response came complete.
        let reuse = requestEnded && upstreamKeepAlive
        phase = requestEnded ? .idle : .answered
        return .endResponse(connection, reuse: reuse, close: closeAfterResponse, finish: requestEnded, settle: settlement)
    }

    /// The upstream connection closed before its response ended; `reused`: it had come from the pool.
    mutating func upstreamClosed(reused: Bool) -> Action {
        switch phase {
        case .forwarding:
            if reused, let replay, let target {
                // The pooled connection was closed by the upstream while idle: resend the idempotent request once, fresh.
                self.replay = nil
                pending = replay
                phase = .connecting
                return .connect(target, fresh: true)
            }
            return respond(.json(.badGateway, #"{"error":"Bad gateway","service":"\#(target?.name ?? "")"}"#), close: false, outcome: .failed)
        case .responding:
            phase = .answered
            return .closeClient(settle: settle(.failed), abandon: nil)
        default:
            return .none
        }
    }

    /// No response within the timeout; `clientDeadline`: the timer was the client's shorter deadline.
    mutating func timedOut(clientDeadline: Bool, exchange: Int) -> Action {
        guard exchange == exchangeID else { return .none }
        let outcome: ProxyOutcome = clientDeadline ? .clientDeadline : .failed
        switch phase {
        case .forwarding(let connection):
            return respond(
                .json(.gatewayTimeout, #"{"error":"Upstream timed out","service":"\#(target?.name ?? "")"}"#), close: false, outcome: outcome,
                abandon: connection)
        case .responding(let connection):
            phase = .answered
            return .closeClient(settle: settle(outcome), abandon: connection)
        default:
            return .none
        }
    }

    // MARK: The client connection

    mutating func clientClosed() -> Action {
        let hadExchange = hasExchange
        let abandon = connection
        let settlement = settle(.abandoned)
        phase = .closed
        return .teardown(abandon: abandon, settle: settlement, hadExchange: hadExchange)
    }

    /// Nothing was read for the idle period: close an idle keep-alive connection or a stalled upload; a response still
    /// streaming to a client that has sent everything is left alone.
    func shouldCloseWhenIdle() -> Bool {
        !hasExchange || !requestEnded
    }

    // MARK: Helpers

    private mutating func settle(_ outcome: ProxyOutcome) -> Settlement? {
        guard let upstream = routed else { return nil }
        routed = nil
        return Settlement(upstream: upstream, outcome: outcome)
    }

    private mutating func runLocal(_ local: @escaping LocalHandler) -> Action {
        let body = localBody
        localBody = ByteBuffer()
        phase = .runningLocal
        return .runLocal(local, body)
    }

    /// A complete response of the proxy's own; the rest of the request body is dropped.
    /// `abandon`: the upstream connection in use, closed since its response will not be read.
    private mutating func respond(
        _ response: ProxyResponse, close: Bool, outcome: ProxyOutcome = .abandoned, abandon: Connection? = nil
    ) -> Action {
        pending.removeAll(keepingCapacity: true)
        replay = nil
        phase = requestEnded ? .idle : .answered
        return .respond(response, close: close || !keepAlive, finish: requestEnded, settle: settle(outcome), abandon: abandon)
    }
}

extension ProxyResponse {
    static func tooLarge(_ limit: Int) -> ProxyResponse {
        .json(.payloadTooLarge, #"{"error":"Request body too large","limit":\#(limit)}"#)
    }
}
