import Logging
import ServiceCache
import ServiceCore
import ServiceLifecycle
import ServiceRedis

extension Messaging {
    /// The service's caches and the work they need: with `REDIS_URL`, a second level in Redis and invalidations over
    /// its pub/sub; without, in-process caches that invalidate each other through this event log.
    public func caches(settings: ServiceSettings, logger: Logger) throws -> (caches: Caches, services: [any Service]) {
        guard !settings.redisURL.isEmpty else {
            let backplane = EventLogCacheBackplane(log: log, logger: logger)
            return (Caches(backplane: backplane, logger: logger), backplane.services)
        }
        var configuration = try RedisConfiguration(url: settings.redisURL, caFile: settings.redisCAFile)
        configuration.clientName = "shop-\(settings.name)"
        let client = RedisClient(configuration: configuration, logger: logger)
        let backplane = RedisCacheBackplane(client: client, prefix: settings.redisKeyPrefix, logger: logger)
        logger.info("Caches shared through Redis", metadata: ["redis": "\(configuration.redacted)"])
        return (Caches(backplane: backplane, logger: logger), backplane.services + [RedisClientService(client: client)])
    }
}
