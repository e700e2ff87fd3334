import NIOCore
import NIOHTTP1
import NIOPosix

/// Receives the parts of an upstream response; implemented by the downstream connection's handler.
protocol UpstreamResponseDelegate: AnyObject {
    func upstreamResponse(_ part: HTTPClientResponsePart)
    func upstreamReadComplete()
    func upstreamClosed()
}

/// One keep-alive connection to an upstream, owned by one event loop.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let upstream: ProxyUpstream
    /// True once the connection has carried a request; a failure before any byte of a response on a reused connection
    /// is the stale keep-alive race, which an idempotent request may retry.
    var reused = false

    init(channel: any Channel, handler: UpstreamHandler, upstream: ProxyUpstream) {
        self.channel = channel
        self.handler = handler
        self.upstream = upstream
    }
}

/// The inbound end of an upstream connection's pipeline: hands response parts to the current delegate.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    weak var delegate: (any UpstreamResponseDelegate)?
    var onClose: (() -> Void)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let delegate else {
            // Bytes nobody asked for: the connection cannot be trusted any more.
            context.close(promise: nil)
            return
        }
        delegate.upstreamResponse(part)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let delegate = self.delegate
        self.delegate = nil
        onClose?()
        onClose = nil
        delegate?.upstreamClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Keep-alive connections to upstreams for one event loop; used only from that loop, so it needs no locks.
///
/// Written by hand at the SwiftNIO level: AsyncHTTPClient's pool costs about three times the CPU per forwarded request
/// (it converts every request and response to and from async types), which is the gateway's whole budget.
/// `@unchecked Sendable`: the pool is created up front for each loop but only ever used on its own loop
/// (asserted in debug builds), which is the invariant the compiler cannot see.
final class UpstreamPool: @unchecked Sendable {
    let eventLoop: any EventLoop
    let configuration: ProxyServerConfiguration
    private var idle: [ProxyUpstream: [UpstreamConnection]] = [:]
    /// Correlation ids for requests that arrive without one, on this loop.
    var requestIDs = RequestIDGenerator()
    /// The deadline sent upstream when the client asks for none (the response timeout), in milliseconds and as text.
    let defaultBudget: (milliseconds: Int, text: String)

    init(eventLoop: any EventLoop, configuration: ProxyServerConfiguration) {
        let milliseconds = Int(configuration.responseTimeout.nanoseconds / 1_000_000)
        self.defaultBudget = (milliseconds, String(milliseconds))
        self.eventLoop = eventLoop
        self.configuration = configuration
    }

    /// An idle connection to `upstream`, or a new one; `fresh` skips idle connections.
    func acquire(_ upstream: ProxyUpstream, fresh: Bool = false, _ callback: @escaping (Result<UpstreamConnection, any Error>) -> Void) {
        eventLoop.assertInEventLoop()
        if !fresh {
            while let connection = idle[upstream]?.popLast() {
                if connection.channel.isActive {
                    connection.reused = true
                    callback(.success(connection))
                    return
                }
            }
        }
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
        bootstrap.connect(host: upstream.host, port: upstream.port).assumeIsolated().whenComplete { result in
            callback(
                result.flatMap { channel in
                    Result {
                        let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                        return UpstreamConnection(channel: channel, handler: handler, upstream: upstream)
                    }
                }
            )
        }
    }

    /// Returns a connection whose exchange finished cleanly; it is closed instead when the pool is full or it is dead.
    func release(_ connection: UpstreamConnection) {
        eventLoop.assertInEventLoop()
        connection.handler.delegate = nil
        guard connection.channel.isActive, idle[connection.upstream, default: []].count < configuration.maxIdleConnectionsPerUpstream else {
            connection.channel.close(promise: nil)
            return
        }
        // Backpressure may have paused reading for the last client; an idle connection must read (to see a close).
        try? connection.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        connection.handler.onClose = { [weak self, weak connection] in
            guard let self, let connection else { return }
            self.idle[connection.upstream]?.removeAll { $0 === connection }
        }
        idle[connection.upstream, default: []].append(connection)
    }

    /// Closes every idle connection.
    func closeAll() {
        for connections in idle.values {
            for connection in connections { connection.channel.close(promise: nil) }
        }
        idle.removeAll()
    }
}
