import Hummingbird
import NIOCore
import NIOPosix
import ServiceAuth
import ServiceCore
import ServiceProxy
import ShopContracts

/// Builds the gateway: the SwiftNIO reverse proxy with the shop's routing table, token checks and aggregated health.
public func buildGateway(_ configuration: GatewayConfiguration) throws -> ProxyServer {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let authURL = configuration.serviceURLs[.auth] ?? "http://127.0.0.1:\(ServiceName.auth.port())"
    let verifier = configuration.tokenVerifier ?? .remote(authURL: authURL, logger: logger)
    let router = try GatewayRouter(configuration: configuration, verifier: verifier, health: GatewayHealth(configuration: configuration))
    return ProxyServer(
        configuration: ProxyServerConfiguration(
            host: settings.host,
            port: settings.port,
            maxBodyBytes: settings.maxBodyBytes,
            responseTimeout: .seconds(Int64(configuration.upstreamTimeoutSeconds))
        ),
        router: router,
        group: configuration.eventLoopThreads == System.coreCount
            ? MultiThreadedEventLoopGroup.singleton : MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads),
        logger: logger,
        onServerRunning: configuration.onServerRunning
    )
}
