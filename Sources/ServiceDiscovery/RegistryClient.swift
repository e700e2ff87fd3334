import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ServiceCore
import ServiceLifecycle

/// Answer of `POST /register`.
public struct RegistrationAnswer: Codable, Sendable {
    public var instance: ServiceInstance
    /// How often the instance should send a heartbeat (`PUT /register/:id`).
    public var heartbeatIntervalMs: Int
    /// After how long without a heartbeat the instance is evicted.
    public var ttlMs: Int

    public init(instance: ServiceInstance, heartbeatIntervalMs: Int, ttlMs: Int) {
        self.instance = instance
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.ttlMs = ttlMs
    }
}

/// Answer of `GET /services/:name`.
public struct DiscoveryAnswer: Codable, Sendable {
    public var name: String
    public var instances: [ServiceInstance]

    public init(name: String, instances: [ServiceInstance]) {
        self.name = name
        self.instances = instances
    }
}

/// Keeps one instance registered (as the guide's `registerService`, but kept alive): registers once the server listens,
/// sends heartbeats, registers again if the registry forgot it (a restarted gateway), and deregisters on graceful
/// shutdown. Every call carries the service's own token: only a service may register itself.
public struct RegistryAgent: Service {
    let registryURL: String
    let name: String
    let host: String
    public let instanceID: String
    let credentials: any ServiceCredentials
    let http: HTTPClient
    let logger: Logger
    /// Yields the bound port once the server listens.
    let port: @Sendable () async -> Int?

    /// - Parameters:
    ///   - host: the address other processes reach this instance at; `port` is learned when the server listens.
    public init(
        registryURL: String, name: String, host: String, instanceID: String = "", credentials: any ServiceCredentials,
        http: HTTPClient = .betweenServices, logger: Logger, port: @escaping @Sendable () async -> Int?
    ) {
        self.registryURL = registryURL.hasSuffix("/") ? String(registryURL.dropLast()) : registryURL
        self.name = name
        self.host = host
        self.instanceID = instanceID.isEmpty ? "\(name)-\(UUID().uuidString.prefix(8).lowercased())" : instanceID
        self.credentials = credentials
        self.http = http
        self.logger = logger
        self.port = port
    }

    public func run() async throws {
        guard let port = await cancelWhenGracefulShutdown({ await self.port() }) ?? nil else { return }
        let registration = ServiceRegistration(name: name, url: "http://\(host):\(port)", instanceId: instanceID)
        let id = instanceID
        var interval = Duration.seconds(5)
        var registered = false
        var failures = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                if !registered {
                    let answer: RegistrationAnswer = try await call(.POST, "/register", body: registration, expect: .created)
                    interval = .milliseconds(max(100, answer.heartbeatIntervalMs))
                    registered = true
                    logger.info("Registered with the service registry", metadata: ["instance": "\(id)", "url": "\(registration.url)"])
                } else {
                    let status = try await send(.PUT, "/register/\(id)")
                    if status == .notFound {
                        registered = false
                        logger.warning("The registry forgot this instance; registering again", metadata: ["instance": "\(id)"])
                        continue
                    }
                    guard status == .ok else { throw Refused(status: status) }
                    logger.debug("Heartbeat sent", metadata: ["instance": "\(id)"])
                }
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.warning("Service registry unreachable", metadata: ["instance": "\(id)", "error": "\(error)", "failures": "\(failures)"])
                }
            }
            let delay = registered && failures == 0 ? interval : .milliseconds(min(5000, 200 * (1 << min(failures, 5))))
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        }
        if registered {
            // Leaving: tell the registry at once rather than waiting for the TTL (best effort, bounded).
            do {
                _ = try await send(.DELETE, "/register/\(id)", timeout: .seconds(2))
                logger.info("Deregistered from the service registry", metadata: ["instance": "\(id)"])
            } catch {
                logger.warning("Could not deregister", metadata: ["instance": "\(id)", "error": "\(error)"])
            }
        }
    }

    struct Refused: Error, CustomStringConvertible {
        let status: HTTPResponseStatus
        var description: String { "registry answered \(status.code)" }
    }

    private func request(_ method: HTTPMethod, _ path: String) async throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: registryURL + path)
        request.method = method
        request.headers.add(name: "authorization", value: "Bearer \(try await credentials.token())")
        return request
    }

    private func call<Answer: Decodable>(_ method: HTTPMethod, _ path: String, body: some Encodable, expect: HTTPResponseStatus) async throws
        -> Answer
    {
        var request = try await request(method, path)
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        let response = try await http.execute(request, timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard response.status == expect else { throw Refused(status: response.status) }
        return try JSONDecoder().decode(Answer.self, from: bytes)
    }

    private func send(_ method: HTTPMethod, _ path: String, timeout: TimeAmount = .seconds(5)) async throws -> HTTPResponseStatus {
        let response = try await http.execute(try await request(method, path), timeout: timeout)
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.status
    }
}

/// Finds the instances of a service through the registry (`GET /services/:name`), caching the answer for
/// `refreshInterval`; when the registry cannot be asked, the last answer stands.
public final class RegistryLookup: Sendable {
    struct Cached {
        var urls: [String]
        var fetchedAt: ContinuousClock.Instant
    }

    let registryURL: String
    let refreshInterval: Duration
    let http: HTTPClient
    let cache = NIOLockedValueBox<[String: Cached]>([:])
    let refreshing = NIOLockedValueBox<Set<String>>([])

    static let instances = NIOLockedValueBox<[String: RegistryLookup]>([:])

    /// One lookup per registry URL in this process, so its clients share the cached answers.
    public static func shared(_ registryURL: String) -> RegistryLookup {
        instances.withLockedValue { instances in
            if let existing = instances[registryURL] { return existing }
            let lookup = RegistryLookup(registryURL: registryURL)
            instances[registryURL] = lookup
            return lookup
        }
    }

    public init(registryURL: String, refreshInterval: Duration = .seconds(1), http: HTTPClient = .betweenServices) {
        self.registryURL = registryURL.hasSuffix("/") ? String(registryURL.dropLast()) : registryURL
        self.refreshInterval = refreshInterval
        self.http = http
    }

    /// The base URLs of `name`'s instances (empty when the registry knows none); asks the registry when the cached
    /// answer is older than the refresh interval and no other call is asking already.
    public func urls(of name: String, credentials: (any ServiceCredentials)?) async -> [String] {
        let cached = cache.withLockedValue { $0[name] }
        if let cached, cached.fetchedAt.duration(to: .now) < refreshInterval { return cached.urls }
        let ask = refreshing.withLockedValue { $0.insert(name).inserted }
        guard ask else { return cached?.urls ?? [] }
        defer { _ = refreshing.withLockedValue { $0.remove(name) } }
        do {
            var request = HTTPClientRequest(url: "\(registryURL)/services/\(name)")
            if let credentials { request.headers.add(name: "authorization", value: "Bearer \(try await credentials.token())") }
            let response = try await http.execute(request, timeout: .seconds(1))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            let urls: [String]
            switch response.status {
            case .ok: urls = try JSONDecoder().decode(DiscoveryAnswer.self, from: bytes).instances.map(\.url)
            case .notFound: urls = []
            default: return keep(cached, of: name)
            }
            cache.withLockedValue { $0[name] = Cached(urls: urls, fetchedAt: .now) }
            return urls
        } catch {
            return keep(cached, of: name)
        }
    }
}

extension RegistryLookup {
    /// After a failed refresh: the last answer stands, and the registry is not asked again before the next interval (so
    /// an unreachable registry does not add its timeout to every call).
    func keep(_ cached: Cached?, of name: String) -> [String] {
        let urls = cached?.urls ?? []
        cache.withLockedValue { $0[name] = Cached(urls: urls, fetchedAt: .now) }
        return urls
    }
}

/// Keeps a hosted registry honest: evicts instances whose heartbeats stopped, and polls each instance's health check,
/// evicting one that fails `threshold` times in a row.
public struct RegistryMonitor: Service {
    let registry: ServiceRegistry
    let interval: Duration
    let threshold: Int
    let http: HTTPClient
    let logger: Logger

    public init(registry: ServiceRegistry, interval: Duration = .seconds(5), threshold: Int = 2, http: HTTPClient = .betweenServices, logger: Logger)
    {
        self.registry = registry
        self.interval = interval
        self.threshold = threshold
        self.http = http
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            await sweep()
        }
    }

    /// One round: expired heartbeats, then active health checks of the rest.
    public func sweep() async {
        for instance in registry.evictExpired() {
            logger.warning(
                "Evicted instance: heartbeats stopped",
                metadata: ["instance": "\(instance.id)", "service": "\(instance.name)", "url": "\(instance.url)"])
        }
        let instances = registry.all.values.flatMap { $0 }
        let http = self.http
        // A check gets two seconds whatever the interval: a busy instance is slow, not dead.
        let timeout = TimeAmount.seconds(2)
        await withTaskGroup(of: (ServiceInstance, Bool).self) { group in
            for instance in instances {
                group.addTask {
                    do {
                        let response = try await http.execute(HTTPClientRequest(url: instance.healthCheck), timeout: timeout)
                        _ = try await response.body.collect(upTo: 1 << 20)
                        return (instance, (200..<300).contains(response.status.code))
                    } catch {
                        return (instance, false)
                    }
                }
            }
            for await (instance, healthy) in group {
                if let evicted = registry.recordCheck(instance.id, healthy: healthy, threshold: threshold) {
                    logger.warning(
                        "Evicted instance: health checks failed",
                        metadata: ["instance": "\(evicted.id)", "service": "\(evicted.name)", "url": "\(evicted.url)"]
                    )
                }
            }
        }
    }
}

extension ServiceSettings {
    /// The registry lookup shared by this process's clients, when a registry is configured.
    public var registry: RegistryLookup? { registryURL.isEmpty ? nil : RegistryLookup.shared(registryURL) }
}
