import Instrumentation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import ServiceCore
import ServiceLifecycle
import Tracing

/// An HTTP/1.1 reverse proxy built directly on SwiftNIO: per-event-loop pools of keep-alive upstream connections,
/// streamed bodies, and routing decided by a ``ProxyRouter``. On graceful shutdown it stops accepting, lets in-flight
/// requests finish, and closes idle connections.
public final class ProxyServer: Service, Sendable {
    let configuration: ProxyServerConfiguration
    let router: any ProxyRouter
    let group: any EventLoopGroup
    let logger: Logger
    let onServerRunning: @Sendable (Int) async -> Void
    let tracer: (any Tracer)?

    /// Each request gets a server span from `tracer`, or from the process's tracer (looked up when the server starts)
    /// when that is nil.
    public init(
        configuration: ProxyServerConfiguration,
        router: any ProxyRouter,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        tracer: (any Tracer)? = nil,
        logger: Logger,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.router = router
        self.group = group
        self.tracer = tracer
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        let configuration = self.configuration
        let router = self.router
        let logger = self.logger
        let spans = if let tracer { HTTPServerSpans.tracer(tracer, instrument: tracer) } else { HTTPServerSpans.tracer(InstrumentationSystem.tracer) }
        let quiescing = ServerQuiescingHelper(group: group)
        let pools = PoolRegistry(group: group, configuration: configuration)

        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pool = pools.pool(for: channel.eventLoop)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: configuration.idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: false)
                    try channel.pipeline.syncOperations.addHandler(ProxyProtocolErrorHandler())
                    try channel.pipeline.syncOperations.addHandler(
                        ProxyServerHandler(router: router, pool: pool, configuration: configuration, tracer: spans, logger: logger)
                    )
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()

        let port = channel.localAddress?.port ?? configuration.port
        logger.info("\(configuration.name) listening", metadata: ["address": "\(configuration.host):\(port)"])
        await onServerRunning(port)

        let drained = group.next().makePromise(of: Void.self)
        let started = NIOLockedValueBox(false)
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await drained.futureResult.get()
        } onCancelOrGracefulShutdown: {
            let first = started.withLockedValue { started in
                defer { started = true }
                return !started
            }
            if first { quiescing.initiateShutdown(promise: drained) }
        }
        try? await pools.closeAll(on: group.next()).get()
        logger.info("\(configuration.name) stopped")
    }
}

/// One ``UpstreamPool`` per event loop of the group, each used only on its own loop.
final class PoolRegistry: Sendable {
    private let pools: [ObjectIdentifier: UpstreamPool]

    init(group: any EventLoopGroup, configuration: ProxyServerConfiguration) {
        var pools: [ObjectIdentifier: UpstreamPool] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = UpstreamPool(eventLoop: loop, configuration: configuration)
        }
        self.pools = pools
    }

    /// The pool of `eventLoop`; call on that loop.
    func pool(for eventLoop: any EventLoop) -> UpstreamPool {
        pools[ObjectIdentifier(eventLoop)]!
    }

    /// Closes every idle upstream connection; completes when each loop has done so.
    func closeAll(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let futures = pools.values.map { pool in pool.eventLoop.submit { pool.closeAll() } }
        return EventLoopFuture.andAllComplete(futures, on: eventLoop)
    }
}
