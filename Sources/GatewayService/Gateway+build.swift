import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
import ServiceProxy
import ServiceRedis
import ServiceResilience
import ShopContracts

/// Builds the gateway: the SwiftNIO reverse proxy with the shop's routing table, token checks, rate limits, load
/// balancing and aggregated health, plus the service registry it hosts and the monitor that evicts dead instances.
public func buildGateway(_ configuration: GatewayConfiguration) throws -> any Service {
    if !configuration.problems.isEmpty {
        throw GatewayConfiguration.ConfigurationError(description: configuration.problems.joined(separator: "; "))
    }
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let authURL =
        (configuration.serviceURLs[.auth] ?? "http://127.0.0.1:\(ServiceName.auth.port())").split(separator: ",").first.map(String.init) ?? ""
    let verifier = configuration.tokenVerifier ?? .remote(authURL: authURL, logger: logger)
    let registry = ServiceRegistry(ttl: configuration.registryTTL)
    var statics: [String: [ProxyUpstream]] = [:]
    for service in ServiceName.shopServices where service != .gateway {
        statics[service.rawValue] = try configuration.upstreams(service)
    }
    let upstreams = GatewayUpstreams(
        registry: registry, statics: statics, strategy: configuration.loadBalancing, maxInFlight: configuration.maxInFlightPerInstance, logger: logger
    )
    let (defaultLimit, overrides) = try configuration.rateLimits()
    // A store that fails fails for every request: logged at most every 10 s (with how many failed since), not per request.
    let failures = NIOLockedValueBox((count: 0, next: NIODeadline.uptimeNanoseconds(0)))
    let policy = configuration.rateLimitOnStoreFailure
    let report: @Sendable (any Error) -> Void = { error in
        let count = failures.withLockedValue { state -> Int? in
            state.count += 1
            guard NIODeadline.now() >= state.next else { return nil }
            defer { state = (0, .now() + .seconds(10)) }
            return state.count
        }
        if let count {
            logger.error(
                "Rate-limit store failed; following the configured policy",
                metadata: ["error": "\(error)", "policy": "\(policy.rawValue)", "failures": "\(count)"])
        }
    }
    var services: [any Service] = []
    let limiter: RateLimiter
    var mirror: RegistryMirror?
    var redis: RedisClient?
    if let url = configuration.redisURL {
        var redisConfiguration = try RedisConfiguration(url: url, caFile: configuration.redisCAFile)
        redisConfiguration.clientName = "shop-gateway"
        let client = RedisClient(configuration: redisConfiguration, logger: logger)
        redis = client
        // The registry shared with every other gateway (see RegistryMirror).
        let shared = RegistryMirror(
            redis: client, registry: registry, interval: configuration.registrySyncInterval, logger: logger,
            prefix: configuration.redisKeyPrefix + "registry:")
        registry.onRemoval { instances in Task { await shared.remove(instances) } }
        mirror = shared
        services.append(shared)
        services.append(RedisClientService(client: client))
        logger.info("Rate limits and the registry shared through Redis", metadata: ["redis": "\(redisConfiguration.redacted)"])
    }
    if configuration.rateLimitStore == nil, let redis {
        limiter = RateLimiter(
            shared: RedisRateLimitStore(client: redis, prefix: configuration.redisKeyPrefix + "ratelimit:"),
            timeout: configuration.rateLimitRedisTimeout, onFailure: policy, onStoreFailure: report)
    } else {
        limiter = RateLimiter(store: configuration.rateLimitStore ?? InMemoryRateLimitStore(), onFailure: policy, onStoreFailure: report)
    }
    let health = GatewayHealth(configuration: configuration, registry: registry)
    let limits = GatewayRateLimits(defaultLimit: defaultLimit, overrides: overrides, limiter: limiter)
    let registryAPI = RegistryAPI(registry: registry, verifier: verifier, mirror: mirror)
    func router(_ exposure: GatewayRouter.Exposure) -> GatewayRouter {
        GatewayRouter(
            exposure: exposure, verifier: verifier, health: health, upstreams: upstreams, limits: limits, registry: registryAPI,
            trustedProxies: configuration.trustedProxies)
    }
    let group: any EventLoopGroup =
        configuration.eventLoopThreads == System.coreCount
        ? MultiThreadedEventLoopGroup.singleton : MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
    let proxyConfiguration = ProxyServerConfiguration(
        host: settings.host,
        port: settings.port,
        maxBodyBytes: settings.maxBodyBytes,
        responseTimeout: .seconds(Int64(configuration.upstreamTimeoutSeconds))
    )
    let (boundPort, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let announce = configuration.onServerRunning
    let proxy = ProxyServer(
        configuration: proxyConfiguration,
        router: router(configuration.internalPort == nil ? .everything : .publicOnly),
        group: group,
        logger: logger,
        onServerRunning: { port in
            portContinuation.yield(port)
            portContinuation.finish()
            await announce(port)
        }
    )
    if let internalPort = configuration.internalPort {
        var internalConfiguration = proxyConfiguration
        internalConfiguration.port = internalPort
        internalConfiguration.name = "Gateway (internal: health, metrics, registry)"
        services.append(
            ProxyServer(
                configuration: internalConfiguration, router: router(.internalOnly), group: group, logger: logger,
                onServerRunning: configuration.onInternalServerRunning))
    }
    if !configuration.trustedProxies.isEmpty {
        logger.info("X-Forwarded-For believed from trusted proxies", metadata: ["trusted": "\(configuration.trustedProxies)"])
    }
    services.append(GatewaySelfRegistration(registry: registry, mirror: mirror, host: settings.host, boundPort: boundPort, logger: logger))
    return ServiceSet([proxy, RegistryMonitor(registry: registry, interval: configuration.registryCheckInterval, logger: logger)] + services)
}
