import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceResilience

/// Matches replies to commands on one connection: replies come in the order commands were sent, so each command's
/// promise waits in a queue (which is what makes pipelining free). Out-of-band pushes (pub/sub) go to `onPush`.
final class RedisChannelHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    /// Promises in the order their replies will come; nil for a caller that gave up (its reply is read and dropped).
    private var pending = CircularBuffer<EventLoopPromise<RESPValue>?>()
    /// The connection's own limit on a reply (the configuration's command timeout).
    let replyTimeout: TimeAmount
    /// Commands sent and replies received so far: a command's timeout fires only if its reply is still owed.
    private var sent = 0
    private var received = 0
    private var closeReason: RedisError?
    var onPush: (([RESPValue]) -> Void)?
    /// Error replies nobody waits for (e.g. a refused SUBSCRIBE), for the log.
    var onUnexpectedError: ((String) -> Void)?

    init(replyTimeout: TimeAmount) {
        self.replyTimeout = replyTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Writes `buffer` (holding `promises.count` commands) and queues their promises. Past `timeout` the callers get
    /// ``RedisError/timedOut`` and their replies, when they come, are dropped; only a reply still owed after the
    /// connection's own `replyTimeout` closes the connection (a server that stopped answering), so one impatient caller
    /// never breaks the commands pipelined beside its own.
    func send(_ buffer: ByteBuffer, promises: [EventLoopPromise<RESPValue>], timeout: TimeAmount) {
        guard let context, closeReason == nil, context.channel.isActive else {
            for promise in promises { promise.fail(closeReason ?? .connectionClosed) }
            return
        }
        let first = sent
        for promise in promises { pending.append(promise) }
        sent += promises.count
        let last = sent
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        guard !promises.isEmpty else { return }
        let loop = context.eventLoop.assumeIsolated()
        if timeout < replyTimeout {
            loop.scheduleTask(in: timeout) { [weak self] in self?.giveUp(from: first, to: last) }
        }
        loop.scheduleTask(in: max(timeout, replyTimeout)) { [weak self] in
            guard let self, self.received < last else { return }
            self.close(.timedOut)
        }
    }

    /// Fails the callers of commands `from..<to` whose replies have not come, leaving their places in the queue.
    private func giveUp(from: Int, to: Int) {
        guard received < to else { return }  // every reply came
        for number in max(from, received)..<to {
            let index = number - received
            guard index < pending.count, let promise = pending[pending.index(pending.startIndex, offsetBy: index)] else { continue }
            pending[pending.index(pending.startIndex, offsetBy: index)] = nil
            promise.fail(RedisError.timedOut)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if case .push(let parts) = value {
            onPush?(parts)
            return
        }
        guard let waiting = pending.popFirst() else {
            // Nobody waits for a reply: under RESP2 a subscribed connection's messages come this way.
            if case .array(let parts) = value { onPush?(parts) }
            if case .error(let message) = value { onUnexpectedError?(message) }
            return
        }
        received += 1
        waiting?.succeed(value)  // nil: the caller gave up
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? RESPProtocolError {
            close(.protocolError(error.description))
        } else {
            close(.connectionClosed)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let reason = closeReason ?? .connectionClosed
        closeReason = reason
        while let waiting = pending.popFirst() { waiting?.fail(reason) }
        context.fireChannelInactive()
    }

    func close(_ reason: RedisError) {
        if closeReason == nil { closeReason = reason }
        context?.close(promise: nil)
    }
}

/// One connection to Redis, ready for commands (greeted with `HELLO 3`, authenticated, its database selected).
public final class RedisConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<RedisChannelHandler>
    let configuration: RedisConfiguration
    /// Whether the server speaks RESP3 (Redis 6 and later).
    public let protocolVersion: Int

    private init(channel: any Channel, handler: NIOLoopBound<RedisChannelHandler>, configuration: RedisConfiguration, protocolVersion: Int) {
        self.channel = channel
        self.handler = handler
        self.configuration = configuration
        self.protocolVersion = protocolVersion
    }

    /// Connects, greets and authenticates. `onPush` receives out-of-band messages (pub/sub), on the event loop.
    public static func connect(
        _ configuration: RedisConfiguration, eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.any(),
        onPush: (@Sendable ([RESPValue]) -> Void)? = nil, onUnexpectedError: (@Sendable (String) -> Void)? = nil
    ) async throws -> RedisConnection {
        let tlsContext = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(.nanoseconds(configuration.connectTimeout.wholeNanoseconds))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                // A peer that vanished without closing (a half-open connection) is found by the kernel's keepalive.
                .channelOption(.socketOption(.so_keepalive), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = RedisChannelHandler(replyTimeout: .nanoseconds(configuration.commandTimeout.wholeNanoseconds))
                        handler.onPush = onPush
                        handler.onUnexpectedError = onUnexpectedError
                        if let tlsContext {
                            let hostname = configuration.host.first?.isNumber == true || configuration.host.contains(":") ? nil : configuration.host
                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tlsContext, serverHostname: hostname))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw RedisError.unavailable("\(configuration.host):\(configuration.port): \(error)")
        }
        // A connection closed at once (e.g. a TLS handshake the server refused) has torn its pipeline down already.
        let handler: NIOLoopBound<RedisChannelHandler>
        do {
            handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self), eventLoop: channel.eventLoop)
            }.get()
        } catch {
            try? await channel.close()
            throw RedisError.unavailable("\(configuration.host):\(configuration.port): connection closed while opening (\(error))")
        }
        let provisional = RedisConnection(channel: channel, handler: handler, configuration: configuration, protocolVersion: 3)
        do {
            // HELLO 3 switches to RESP3 and authenticates in one round trip.
            var hello: [RedisArgument] = ["HELLO", "3"]
            if let password = configuration.password {
                hello += ["AUTH", RedisArgument(configuration.user ?? "default"), RedisArgument(password)]
            }
            if let name = configuration.clientName { hello += ["SETNAME", RedisArgument(name)] }
            var version = 3
            do {
                _ = try await provisional.send(hello)
            } catch RedisError.server(.err, let message) where message.lowercased().contains("unknown command") {
                // Before Redis 6: RESP2, and AUTH on its own.
                version = 2
                if let password = configuration.password { _ = try await provisional.send(["AUTH", RedisArgument(password)]) }
            }
            if configuration.database != 0 { _ = try await provisional.send(["SELECT", RedisArgument(configuration.database)]) }
            return RedisConnection(channel: channel, handler: handler, configuration: configuration, protocolVersion: version)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    public var isActive: Bool { channel.isActive }

    /// Completes when the connection has closed.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Sends one command; an error reply is thrown as ``RedisError/server(_:message:)``.
    public func send(_ command: [RedisArgument], timeout: Duration? = nil) async throws -> RESPValue {
        let reply = try await pipeline([command], timeout: timeout)[0]
        if case .error(let message) = reply { throw RedisError.reply(message) }
        return reply
    }

    /// Sends the commands at once (one write) and answers their replies in order; error replies are returned as
    /// `.error` values, each for its own command.
    public func pipeline(_ commands: [[RedisArgument]], timeout: Duration? = nil) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        var buffer = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands { buffer.writeRedisCommand(command) }
        let eventLoop = channel.eventLoop
        let promises = commands.map { _ in eventLoop.makePromise(of: RESPValue.self) }
        let timeout = TimeAmount.nanoseconds((timeout ?? configuration.commandTimeout).wholeNanoseconds)
        let handler = self.handler
        let buffered = buffer
        eventLoop.execute { handler.value.send(buffered, promises: promises, timeout: timeout) }
        var replies: [RESPValue] = []
        replies.reserveCapacity(promises.count)
        for promise in promises { replies.append(try await promise.futureResult.get()) }
        return replies
    }

    /// Writes a command whose answers come as pushes (SUBSCRIBE and friends under RESP3), without waiting for one.
    func write(_ command: [RedisArgument]) {
        var buffer = channel.allocator.buffer(capacity: 64)
        buffer.writeRedisCommand(command)
        let handler = self.handler
        let buffered = buffer
        channel.eventLoop.execute { handler.value.send(buffered, promises: [], timeout: .seconds(1)) }
    }

    public func close() async {
        try? await channel.close()
    }
}
