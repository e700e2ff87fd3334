import Foundation
import Logging
import ServiceDiscovery
import ServiceLifecycle
import ServiceRedis

/// The registry shared by every gateway through Redis: each instance is a key holding its JSON that expires with the
/// registry's TTL (a heartbeat at any gateway renews it), listed in one set so no gateway needs `KEYS` or `SCAN`. Every
/// gateway writes the registrations and heartbeats it receives, deletes what it removes (unregistered, failing its
/// checks), and every `interval` makes its own registry (what it balances over) hold what Redis holds — so a service
/// registers with one gateway and every gateway balances over it within one interval.
///
/// Redis rather than the database: the gateway has no database of its own, and instance keys with a TTL are exactly
/// the registry's semantics (a missed heartbeat expires). While Redis is unreachable each gateway keeps its last view
/// and its own registrations, and writes them again with the next heartbeat.
final class RegistryMirror: Service, Sendable {
    let redis: RedisClient
    let registry: ServiceRegistry
    let interval: Duration
    let logger: Logger
    let prefix: String

    init(redis: RedisClient, registry: ServiceRegistry, interval: Duration, logger: Logger, prefix: String = "registry:") {
        self.redis = redis
        self.registry = registry
        self.interval = interval
        self.logger = logger
        self.prefix = prefix
    }

    private var index: RedisArgument { RedisArgument("\(prefix)instances") }
    private func key(_ id: String) -> RedisArgument { RedisArgument("\(prefix)instance:\(id)") }

    /// Writes an instance registered or renewed here.
    func put(_ instance: ServiceInstance) async {
        do {
            let json = String(decoding: try JSONEncoder().encode(instance), as: UTF8.self)
            let replies = try await redis.pipeline([
                ["SET", key(instance.id), RedisArgument(json), "PX", RedisArgument(registry.ttl.wholeMilliseconds)],
                ["SADD", index, RedisArgument(instance.id)],
            ])
            if let failure = replies.first(where: { if case .error = $0 { true } else { false } }) { throw RedisError.unexpectedReply("\(failure)") }
        } catch {
            logger.warning("Could not write an instance to the shared registry", metadata: ["instance": "\(instance.id)", "error": "\(error)"])
        }
    }

    /// Deletes instances removed here.
    func remove(_ instances: [ServiceInstance]) async {
        guard !instances.isEmpty else { return }
        do {
            _ = try await redis.pipeline([["DEL"] + instances.map { key($0.id) }, ["SREM", index] + instances.map { RedisArgument($0.id) }])
        } catch {
            logger.warning("Could not remove instances from the shared registry", metadata: ["error": "\(error)"])
        }
    }

    /// Reads every instance from Redis and makes the local registry hold them.
    func sync() async throws {
        let readAt = ContinuousClock.now
        guard let ids = try await redis.send(["SMEMBERS", index]).elements?.compactMap(\.string) else {
            throw RedisError.unexpectedReply("SMEMBERS")
        }
        var shared: [ServiceInstance] = []
        var stale: [String] = []
        if !ids.isEmpty {
            let values = try await redis.send(["MGET"] + ids.map { key($0) }).elements ?? []
            for (id, value) in zip(ids, values) {
                if case .bulkString(let buffer) = value,
                    let instance = try? JSONDecoder().decode(ServiceInstance.self, from: Data(buffer.readableBytesView))
                {
                    shared.append(instance)
                } else {
                    stale.append(id)  // expired: its key is gone
                }
            }
        }
        if !stale.isEmpty { _ = try await redis.send(["SREM", index] + stale.map { RedisArgument($0) }) }
        // Kept: what was registered or renewed here shortly before the read (its write may still be on its way; a
        // write waits at most the client's command timeout, 1 s).
        let gone = registry.reconcile(with: shared, recentSince: readAt - .seconds(2))
        if !gone.isEmpty {
            logger.info("Instances gone from the shared registry", metadata: ["instances": "\(gone.map(\.id))"])
        }
    }

    func run() async throws {
        var failing = false
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await sync()
                if failing { logger.notice("Shared registry reachable again") }
                failing = false
            } catch {
                if !failing { logger.warning("Shared registry unreachable; balancing over the last view", metadata: ["error": "\(error)"]) }
                failing = true
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }
}
