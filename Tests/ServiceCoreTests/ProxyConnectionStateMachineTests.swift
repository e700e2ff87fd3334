import NIOCore
import NIOHTTP1
import ServiceCore
import Testing

@testable import ServiceProxy

/// The proxy's connection state machine on its own: every path of an exchange, without a socket.
@Suite struct ProxyConnectionStateMachineTests {
    typealias Machine = ProxyConnectionStateMachine<Int>
    let users = ProxyUpstream(name: "user", host: "127.0.0.1", port: 3001)
    let otherUsers = ProxyUpstream(name: "user", host: "127.0.0.1", port: 3011)
    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/users/1")

    /// A machine with a request routed to `users` and connecting.
    func connecting(replayable: Bool = true, keepAlive: Bool = true, limit: Int = 100) -> Machine {
        var machine = Machine(maxBodyBytes: limit)
        #expect(machine.requestHead(keepAlive: keepAlive, declaredLength: nil, replayable: replayable).kind == "route")
        let routed = machine.routedTo(users, exchange: machine.exchangeID)
        #expect(routed)
        let action = machine.forward(head, exchange: machine.exchangeID)
        guard case .connect(let upstream, fresh: false) = action else {
            Issue.record("expected a connect, got \(action)")
            return machine
        }
        #expect(upstream == users)
        return machine
    }

    @Test func aGetIsForwardedAnsweredAndItsConnectionReused() {
        var machine = connecting()
        #expect(machine.requestEnd().kind == "none")  // held back until connected
        guard case .flush(let parts, to: 7, startTimer: true) = machine.connected(7, exchange: machine.exchangeID) else {
            Issue.record("the parts held back go to the new connection and the timer starts")
            return
        }
        #expect(parts.map(\.kind) == ["head", "end"])
        #expect(machine.connection == 7)
        guard case .writeHead(keepAlive: true) = machine.responseHead(delimitedByClose: false) else {
            Issue.record("the head is written")
            return
        }
        #expect(machine.isResponding)
        #expect(!machine.shouldCloseWhenIdle())  // a response streaming to a client that sent everything is left alone
        guard case .endResponse(7, reuse: true, close: false, finish: true, let settle) = machine.responseEnd(status: .ok, upstreamKeepAlive: true)
        else {
            Issue.record("the connection goes back to the pool and the exchange is over")
            return
        }
        #expect(settle?.upstream == users && settle?.outcome == .responded(.ok))
        #expect(!machine.hasExchange)
        // Settled once: the client leaving afterwards tells the router nothing more.
        guard case .teardown(abandon: nil, settle: nil, hadExchange: false) = machine.clientClosed() else {
            Issue.record("nothing left to tear down")
            return
        }
    }

    @Test func aStalePooledConnectionIsRetriedOnceFreshForAnIdempotentRequest() {
        var machine = connecting()
        _ = machine.requestEnd()
        _ = machine.connected(7, exchange: machine.exchangeID)
        guard case .connect(let upstream, fresh: true) = machine.upstreamClosed(reused: true) else {
            Issue.record("an idempotent bodiless request is sent again on a fresh connection")
            return
        }
        #expect(upstream == users)
        guard case .flush(let parts, to: 8, startTimer: true) = machine.connected(8, exchange: machine.exchangeID) else {
            Issue.record("the whole request again")
            return
        }
        #expect(parts.map(\.kind) == ["head", "end"])
        // Only once: the fresh connection closing as well is a 502.
        guard case .respond(let response, close: false, finish: true, let settle, abandon: nil) = machine.upstreamClosed(reused: true) else {
            Issue.record("a 502")
            return
        }
        #expect(response.status == .badGateway)
        #expect(settle?.outcome == .failed)
    }

    @Test func aRequestWithABodyOrAStartedResponseIsNeverSentAgain() {
        var machine = connecting(replayable: false)
        _ = machine.connected(7, exchange: machine.exchangeID)
        guard case .send(let part, to: 7) = machine.requestBody(ByteBuffer(string: "{}")) else {
            Issue.record("body parts stream to the connection")
            return
        }
        #expect(part.kind == "body")
        guard case .sendEnd(to: 7) = machine.requestEnd() else {
            Issue.record("the end goes upstream and starts the timer")
            return
        }
        guard case .respond(let response, _, finish: true, let settle, _) = machine.upstreamClosed(reused: true) else {
            Issue.record("a POST that may have reached the upstream is a 502, not a resend")
            return
        }
        #expect(response.status == .badGateway && settle?.outcome == .failed)

        // A GET whose response had begun: the client connection is closed (a started response cannot become an error).
        var get = connecting()
        _ = get.requestEnd()
        _ = get.connected(9, exchange: get.exchangeID)
        _ = get.responseHead(delimitedByClose: false)
        guard case .closeClient(let closed, abandon: nil) = get.upstreamClosed(reused: true) else {
            Issue.record("the client connection closes")
            return
        }
        #expect(closed?.outcome == .failed)
    }

    @Test func bodiesOverTheLimitAre413AndTheRestIsDropped() {
        // Declared too large: refused at the head, and the connection closes after the answer.
        var declared = Machine(maxBodyBytes: 10)
        guard
            case .respond(let response, close: true, finish: false, settle: nil, abandon: nil) =
                declared.requestHead(keepAlive: true, declaredLength: 11, replayable: false)
        else {
            Issue.record("413 at the head")
            return
        }
        #expect(response.status == .payloadTooLarge)
        #expect(declared.requestBody(ByteBuffer(string: "12345678901")).kind == "none")
        #expect(declared.requestEnd().kind == "finish")

        // Streamed past the limit while forwarding: the upstream connection is closed, the router hears "abandoned".
        var streamed = connecting(replayable: false, limit: 10)
        _ = streamed.connected(7, exchange: streamed.exchangeID)
        #expect(streamed.requestBody(ByteBuffer(string: "123456")).kind == "send")
        guard case .respond(let refused, close: true, finish: false, let settle, abandon: 7) = streamed.requestBody(ByteBuffer(string: "123456"))
        else {
            Issue.record("413 and the connection abandoned")
            return
        }
        #expect(refused.status == .payloadTooLarge && settle?.outcome == .abandoned)
        #expect(streamed.requestBody(ByteBuffer(string: "more")).kind == "none")
        #expect(streamed.shouldCloseWhenIdle())  // a stalled upload after the answer is closed when idle

        // Past the limit once the response has started: the client connection is closed instead.
        var responding = connecting(replayable: false, limit: 10)
        _ = responding.connected(7, exchange: responding.exchangeID)
        _ = responding.responseHead(delimitedByClose: false)
        guard case .closeClient(let closed, abandon: 7) = responding.requestBody(ByteBuffer(string: "12345678901")) else {
            Issue.record("the client connection closes")
            return
        }
        #expect(closed?.outcome == .abandoned)
    }

    @Test func aLocalHandlerGetsTheWholeBodyOnce() {
        var machine = Machine(maxBodyBytes: 100)
        _ = machine.requestHead(keepAlive: true, declaredLength: nil, replayable: false)
        #expect(machine.requestBody(ByteBuffer(string: "ab")).kind == "none")  // held while routing
        let id = machine.exchangeID
        #expect(machine.handleLocally({ _ in .json(.ok, "{}") }, exchange: id).kind == "none")
        #expect(machine.requestBody(ByteBuffer(string: "cd")).kind == "none")
        guard case .runLocal(_, let body) = machine.requestEnd() else {
            Issue.record("the handler runs at the end")
            return
        }
        #expect(String(buffer: body) == "abcd")
        guard
            case .respond(let response, close: false, finish: true, settle: nil, abandon: nil) = machine.localResponse(
                .json(.created, "{}"), exchange: id)
        else {
            Issue.record("its response is written")
            return
        }
        #expect(response.status == .created)
        #expect(machine.localResponse(.json(.ok, "{}"), exchange: id).kind == "none")  // once
    }

    @Test func lateAnswersForAFinishedExchangeAreIgnoredAndGivenBack() {
        var machine = Machine(maxBodyBytes: 100)
        _ = machine.requestHead(keepAlive: true, declaredLength: nil, replayable: true)
        let first = machine.exchangeID
        _ = machine.requestEnd()
        #expect(machine.respondLocally(.json(.notFound, "{}"), exchange: first).kind == "respond")
        // A second request on the connection; decisions and connections meant for the first do not touch it.
        _ = machine.requestHead(keepAlive: true, declaredLength: nil, replayable: true)
        #expect(machine.exchangeID != first)
        #expect(machine.respondLocally(.json(.ok, "{}"), exchange: first).kind == "none")
        let late = machine.routedTo(users, exchange: first)
        #expect(!late)  // the handler gives that upstream back as abandoned
        guard case .release(3) = machine.connected(3, exchange: first) else {
            Issue.record("a connection nobody wants goes back to the pool")
            return
        }
        #expect(machine.timedOut(clientDeadline: false, exchange: first).kind == "none")
    }

    @Test func anUnreachableInstanceIsSettledAndAnotherTriedThen503() {
        var machine = connecting()
        let id = machine.exchangeID
        guard case .findAlternative(let settle, let tried) = machine.connectFailed(exchange: id) else {
            Issue.record("another instance is looked for")
            return
        }
        #expect(settle?.upstream == users && settle?.outcome == .unreachable)
        #expect(tried == [users])
        guard case .connect(let next, fresh: false) = machine.connectAlternative(otherUsers, exchange: id) else {
            Issue.record("the other instance is tried")
            return
        }
        #expect(next == otherUsers)
        guard case .findAlternative(let second, let triedBoth) = machine.connectFailed(exchange: id) else {
            Issue.record("and when it fails too, another is looked for")
            return
        }
        #expect(second?.upstream == otherUsers && triedBoth == [users, otherUsers])
        guard case .respond(let response, close: false, finish: false, settle: nil, abandon: nil) = machine.connectAlternative(nil, exchange: id)
        else {
            Issue.record("503 when there is none")
            return
        }
        #expect(response.status == .serviceUnavailable)
    }

    @Test func aTimeoutIs504BeforeTheResponseAndACloseAfterIt() {
        var machine = connecting()
        _ = machine.requestEnd()
        _ = machine.connected(7, exchange: machine.exchangeID)
        guard
            case .respond(let response, close: false, finish: true, let settle, abandon: 7) =
                machine.timedOut(clientDeadline: true, exchange: machine.exchangeID)
        else {
            Issue.record("a 504 and the connection closed")
            return
        }
        #expect(response.status == .gatewayTimeout && settle?.outcome == .clientDeadline)

        var streaming = connecting()
        _ = streaming.requestEnd()
        _ = streaming.connected(7, exchange: streaming.exchangeID)
        _ = streaming.responseHead(delimitedByClose: false)
        guard case .closeClient(let closed, abandon: 7) = streaming.timedOut(clientDeadline: false, exchange: streaming.exchangeID) else {
            Issue.record("the client connection closes")
            return
        }
        #expect(closed?.outcome == .failed)
    }

    @Test func framingAndConnectionPersistence() {
        // An HTTP/1.0 client without keep-alive: every answer closes the connection.
        var closing = connecting(keepAlive: false)
        _ = closing.requestEnd()
        _ = closing.connected(7, exchange: closing.exchangeID)
        guard case .writeHead(keepAlive: false) = closing.responseHead(delimitedByClose: false),
            case .endResponse(7, reuse: true, close: true, finish: true, _) = closing.responseEnd(status: .ok, upstreamKeepAlive: true)
        else {
            Issue.record("the client connection closes after the response")
            return
        }
        // A body delimited by close: the connection closes even with keep-alive; an upstream that says close is not reused.
        var delimited = connecting()
        _ = delimited.requestEnd()
        _ = delimited.connected(7, exchange: delimited.exchangeID)
        guard case .writeHead(keepAlive: false) = delimited.responseHead(delimitedByClose: true),
            case .endResponse(7, reuse: false, close: true, finish: true, _) = delimited.responseEnd(status: .ok, upstreamKeepAlive: false)
        else {
            Issue.record("closed after a body delimited by close")
            return
        }
    }

    @Test func aResponseThatEndsBeforeTheUploadIsNotReusedAndTheRestIsDropped() {
        var machine = connecting(replayable: false)
        _ = machine.connected(7, exchange: machine.exchangeID)
        _ = machine.requestBody(ByteBuffer(string: "part"))
        _ = machine.responseHead(delimitedByClose: false)
        guard case .endResponse(7, reuse: false, close: false, finish: false, _) = machine.responseEnd(status: .badRequest, upstreamKeepAlive: true)
        else {
            Issue.record("a connection with a request half sent is not reused")
            return
        }
        #expect(machine.requestBody(ByteBuffer(string: "rest")).kind == "none")
        #expect(machine.requestEnd().kind == "finish")
        #expect(!machine.hasExchange)
    }

    @Test func theClientLeavingAbandonsTheUpstreamAndSettlesOnce() {
        var machine = connecting()
        _ = machine.connected(7, exchange: machine.exchangeID)
        guard case .teardown(abandon: 7, let settle, hadExchange: true) = machine.clientClosed() else {
            Issue.record("the upstream connection is closed")
            return
        }
        #expect(settle?.outcome == .abandoned)
        #expect(machine.requestBody(ByteBuffer(string: "x")).kind == "none")
        #expect(machine.requestHead(keepAlive: true, declaredLength: nil, replayable: true).kind == "none")
        #expect(Machine(maxBodyBytes: 1).shouldCloseWhenIdle())  // an idle keep-alive connection is closed when idle
    }
}

extension ProxyConnectionStateMachine.Action {
    /// The case's name, for actions whose payload the test does not look at.
    var kind: String {
        switch self {
        case .none: "none"
        case .route: "route"
        case .respond: "respond"
        case .runLocal: "runLocal"
        case .connect: "connect"
        case .flush: "flush"
        case .release: "release"
        case .send: "send"
        case .sendEnd: "sendEnd"
        case .findAlternative: "findAlternative"
        case .writeHead: "writeHead"
        case .endResponse: "endResponse"
        case .finish: "finish"
        case .closeClient: "closeClient"
        case .teardown: "teardown"
        }
    }
}

extension HTTPClientRequestPart {
    var kind: String {
        switch self {
        case .head: "head"
        case .body: "body"
        case .end: "end"
        }
    }
}

@Suite struct ProxyHeadersTests {
    /// `X-Forwarded-For` sent on several lines (a proxy in front that adds a line of its own) goes on as one list in the
    /// same order, the peer last: the hop the front proxy added stays right of anything the client wrote.
    @Test func everyForwardedLineGoesOnInOrderThenThePeer() {
        var headers = HTTPHeaders([("X-Forwarded-For", "198.51.100.7"), ("Host", "a"), ("x-forwarded-for", "203.0.113.9, 10.0.0.5")])
        ProxyHeaders.prepareForwardedRequest(&headers, correlationID: "c", clientAddress: "10.0.0.8")
        #expect(headers["x-forwarded-for"] == ["198.51.100.7, 203.0.113.9, 10.0.0.5, 10.0.0.8"])
        // And the walk of a trusted chain then finds the address the front proxy saw, not the client's own line.
        let trusted = try! TrustedProxies(parsing: "10.0.0.0/8")
        #expect(trusted.client(peer: "10.0.0.9", forwardedFor: headers["x-forwarded-for"].map { Substring($0) }) == "203.0.113.9")

        var none = HTTPHeaders([("Host", "a")])
        ProxyHeaders.prepareForwardedRequest(&none, correlationID: "c", clientAddress: "192.0.2.1")
        #expect(none["x-forwarded-for"] == ["192.0.2.1"])
    }

    @Test func locationsAreMappedByWholeSegmentsOnly() {
        let rewrite = ProxyPathRewrite(upstream: "/orders", client: "/api/orders")
        #expect(rewrite.apply(to: "/orders/7") == "/api/orders/7")
        #expect(rewrite.apply(to: "/orders") == "/api/orders")
        #expect(rewrite.apply(to: "/orders?page=2") == "/api/orders?page=2")
        #expect(rewrite.apply(to: "/ordersX/7") == "/ordersX/7")
        #expect(rewrite.apply(to: "/users/7") == "/users/7")
        #expect(rewrite.apply(to: "http://order:3002/orders/7") == "http://order:3002/orders/7")
    }
}
