import Foundation
import Hummingbird
import NIOCore
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceProxy
import ServiceResilience
import ShopContracts

/// Configuration of the gateway: where it listens and where each service is.
public struct GatewayConfiguration: Sendable {
    public var settings: ServiceSettings
    /// Base URL of every service the gateway routes to, from `<NAME>_SERVICE_URL` (default `http://127.0.0.1:<port>`).
    public var serviceURLs: [ServiceName: String]
    /// Services whose readiness `/health` aggregates (`GATEWAY_HEALTH_SERVICES`, default: the services built so far).
    public var healthChecked: [ServiceName]
    /// Upstream response timeout in seconds (`UPSTREAM_TIMEOUT_SECONDS`, default 30).
    public var upstreamTimeoutSeconds: Int
    /// Event loop threads of the proxy (`GATEWAY_EVENT_LOOP_THREADS`, default: one per core).
    public var eventLoopThreads: Int
    /// Verifier to use instead of fetching keys from the auth service (tests).
    public var tokenVerifier: TokenVerifier?
    /// The rate limit of every route group (`RATE_LIMIT`, default `100/60s`; `off` for none), as written.
    public var rateLimit: String
    /// Per-group limits replacing the default (`RATE_LIMIT_<GROUP>`, e.g. `RATE_LIMIT_AUTH=20/60s`), as written.
    public var rateLimitOverrides: [String: String]
    /// What to do when the rate-limit store fails (`RATE_LIMIT_ON_STORE_FAILURE`: `allow`, the default, or `deny`);
    /// either way the failure is logged.
    public var rateLimitOnStoreFailure: RateLimiter.FailurePolicy
    /// Where the counters live (default: this process's memory, or Redis with `REDIS_URL`).
    public var rateLimitStore: (any RateLimitStore)?
    /// Redis shared by every gateway (`REDIS_URL`, `redis://[user:password@]host:port/db` or `rediss://…`; its CA in
    /// `REDIS_CA_FILE`): the rate-limit counters are kept there, so N gateways enforce one limit.
    public var redisURL: String?
    public var redisCAFile: String?
    /// Put before every key in Redis (`REDIS_KEY_PREFIX`): `ratelimit:…` and `registry:…` follow it.
    public var redisKeyPrefix = ""
    /// How long a rate-limit decision may wait for Redis before the store-failure policy decides
    /// (`RATE_LIMIT_REDIS_TIMEOUT_MS`, default 50).
    public var rateLimitRedisTimeout: Duration
    /// With Redis: how often the registry is read from Redis, the bound on how long an instance registered with another
    /// gateway takes to be balanced here (`REGISTRY_SYNC_MS`, default 1000).
    public var registrySyncInterval: Duration
    /// Registry: instances not heard from for this long are evicted (`REGISTRY_TTL_MS`, default 15000).
    public var registryTTL: Duration
    /// Registry: how often instances are health-checked (`REGISTRY_CHECK_INTERVAL_MS`, default 5000); two failed
    /// checks in a row evict an instance.
    public var registryCheckInterval: Duration
    /// How requests are spread over a service's instances (`LOAD_BALANCING`: `least-outstanding`, the default, or
    /// `round-robin`).
    public var loadBalancing: InstanceBalancer<ProxyUpstream>.Strategy
    /// Requests in flight per upstream instance before it is passed over (`GATEWAY_MAX_IN_FLIGHT`, default 1000); with
    /// every instance at the bound the gateway answers 503 at once.
    public var maxInFlightPerInstance: Int
    /// Called with the bound port once the gateway listens (tests bind port 0).
    public var onServerRunning: @Sendable (Int) async -> Void = { _ in }
    /// A second port for what only the cluster may reach (`GATEWAY_INTERNAL_PORT`; 0 binds a free one): detailed
    /// `/health`, `/metrics`, `/register` and `/services` are answered there, and the public port (`PORT`) then answers
    /// only `/api/…` and `/health/live`. Unset, everything is answered on the one port.
    public var internalPort: Int?
    /// Called with the bound internal port once it listens.
    public var onInternalServerRunning: @Sendable (Int) async -> Void = { _ in }
    /// Peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges, e.g. the
    /// ingress controllers' pod network): the rate limit of a public route then counts the address they forwarded for,
    /// not theirs. Empty (the default), the peer's own address is counted.
    public var trustedProxies: TrustedProxies = TrustedProxies()
    /// Settings that could not be read; building the gateway fails with them rather than running without them.
    var problems: [String] = []

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.gateway.rawValue, defaultPort: ServiceName.gateway.port(), environment: environment)
        var urls: [ServiceName: String] = [:]
        for service in ServiceName.shopServices where service != .gateway {
            urls[service] = environment.string(service.urlVariable, default: "http://127.0.0.1:\(service.port())")
        }
        self.serviceURLs = urls
        self.healthChecked =
            environment.get("GATEWAY_HEALTH_SERVICES").map { list in
                list.split(separator: ",").compactMap { ServiceName(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
            } ?? ServiceName.implemented.filter { $0 != .gateway && $0.isShopService }
        self.upstreamTimeoutSeconds = environment.int("UPSTREAM_TIMEOUT_SECONDS", default: 30)
        self.eventLoopThreads = max(1, environment.int("GATEWAY_EVENT_LOOP_THREADS", default: System.coreCount))
        self.rateLimit = environment.string("RATE_LIMIT", default: "100/60s")
        var overrides: [String: String] = [:]
        for group in GatewayRouter.groups {
            if let value = environment.get("RATE_LIMIT_\(group.uppercased())") { overrides[group] = value }
        }
        self.rateLimitOverrides = overrides
        self.rateLimitOnStoreFailure = environment.get("RATE_LIMIT_ON_STORE_FAILURE").flatMap(RateLimiter.FailurePolicy.init(rawValue:)) ?? .allow
        self.redisURL = environment.get("REDIS_URL").flatMap { $0.isEmpty ? nil : $0 }
        self.redisCAFile = environment.get("REDIS_CA_FILE").flatMap { $0.isEmpty ? nil : $0 }
        self.redisKeyPrefix = environment.string("REDIS_KEY_PREFIX", default: "")
        self.rateLimitRedisTimeout = .milliseconds(max(1, environment.int("RATE_LIMIT_REDIS_TIMEOUT_MS", default: 50)))
        self.registryTTL = .milliseconds(max(100, environment.int("REGISTRY_TTL_MS", default: 15_000)))
        self.registrySyncInterval = .milliseconds(max(50, environment.int("REGISTRY_SYNC_MS", default: 1_000)))
        self.registryCheckInterval = .milliseconds(max(50, environment.int("REGISTRY_CHECK_INTERVAL_MS", default: 5_000)))
        self.maxInFlightPerInstance = max(1, environment.int("GATEWAY_MAX_IN_FLIGHT", default: 1000))
        if let value = environment.get("GATEWAY_INTERNAL_PORT"), !value.isEmpty {
            if let port = Int(value), (0...65535).contains(port) {
                self.internalPort = port
            } else {
                problems.append("GATEWAY_INTERNAL_PORT is not a port number: \(value)")
            }
        }
        if let value = environment.get("TRUSTED_PROXIES") {
            do {
                self.trustedProxies = try TrustedProxies(parsing: value)
            } catch {
                problems.append("TRUSTED_PROXIES: \(error)")
            }
        }
        self.loadBalancing = environment.get("LOAD_BALANCING").flatMap(InstanceBalancer<ProxyUpstream>.Strategy.init(rawValue:)) ?? .leastOutstanding
    }

    /// The configured upstreams of `service`, parsed from its URL (or comma-separated URLs).
    func upstreams(_ service: ServiceName) throws -> [ProxyUpstream] {
        let list = serviceURLs[service] ?? ""
        return try list.split(separator: ",").map { url in
            let url = url.trimmingCharacters(in: .whitespaces)
            guard let components = URLComponents(string: url), let host = components.host else {
                throw ConfigurationError(description: "\(service.urlVariable) is not a URL: \(url)")
            }
            return ProxyUpstream(name: service.rawValue, host: host, port: components.port ?? 80)
        }
    }

    /// The parsed rate limits.
    func rateLimits() throws -> (defaultLimit: RateLimit?, overrides: [String: RateLimit?]) {
        do {
            return (try RateLimit.parse(rateLimit), try rateLimitOverrides.mapValues { try RateLimit.parse($0) })
        } catch {
            throw ConfigurationError(description: "\(error)")
        }
    }

    struct ConfigurationError: Error, CustomStringConvertible {
        var description: String
    }
}
