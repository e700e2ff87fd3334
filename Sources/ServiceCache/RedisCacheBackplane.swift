import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import ServiceRedis

/// Caches shared through Redis: the second level as keys with a time to live, tags as sets of their keys (so a tag is
/// invalidated without `KEYS` or `SCAN`), and invalidations published on one channel every instance subscribes to.
///
/// Keys (after the prefix): `cache:<cache>:k:<key>` (the value), `cache:<cache>:t:<tag>` (the tag's keys), and short-lived markers
/// `cache:<cache>:x:<key>` / `cache:<cache>:xt:<tag>` left by an invalidation: for ``guardTime`` a write of that key
/// (or tag) is refused, because the load behind it may have read the value from before the invalidation. A load slower
/// than the guard time could still write an old value, which then lives at most its time to live.
public final class RedisCacheBackplane: CacheBackplane, Sendable {
    public let client: RedisClient
    /// Put before every key and the channel (`REDIS_KEY_PREFIX`).
    public let prefix: String
    public let channel: String
    /// How long an invalidation refuses writes of what it invalidated.
    public let guardTime: Duration
    /// How long one read or write may take before the cache gives up on this level.
    public let timeout: Duration
    let logger: Logger
    private let handler = NIOLockedValueBox<(@Sendable (CacheInvalidation) -> Void)?>(nil)
    let subscriber: RedisSubscriber

    public init(
        client: RedisClient, prefix: String = "", guardTime: Duration = .seconds(10), timeout: Duration = .milliseconds(50), logger: Logger
    ) {
        self.client = client
        self.prefix = prefix
        let channel = prefix + "cache:invalidations"
        self.channel = channel
        self.guardTime = guardTime
        self.timeout = timeout
        self.logger = logger
        let handler = self.handler
        self.subscriber = RedisSubscriber(
            configuration: client.configuration, channels: [channel], logger: logger,
            onReconnect: {
                // Invalidations published while disconnected are lost: forget everything instead.
                handler.withLockedValue { $0 }?(.everything)
            },
            onMessage: { message in
                guard let invalidation = try? JSONDecoder().decode(CacheInvalidation.self, from: Data(message.payload.readableBytesView)) else {
                    return
                }
                handler.withLockedValue { $0 }?(invalidation)
            }
        )
    }

    /// The subscriber (run it with the service; it resubscribes after a reconnect).
    public var services: [any Service] { [subscriber] }

    public var hasSharedLevel: Bool { true }

    public var isListening: Bool { subscriber.isListening }

    func key(_ cache: String, _ key: String) -> String { "\(prefix)cache:\(cache):k:\(key)" }
    func marker(_ cache: String, _ key: String) -> String { "\(prefix)cache:\(cache):x:\(key)" }
    func tagSet(_ cache: String, _ tag: String) -> String { "\(prefix)cache:\(cache):t:\(tag)" }
    func tagMarker(_ cache: String, _ tag: String) -> String { "\(prefix)cache:\(cache):xt:\(tag)" }

    /// The value and what is left of its life, in one round trip.
    public func read(cache: String, key: String) async throws -> SharedEntry? {
        let name = RedisArgument(self.key(cache, key))
        let replies = try await client.pipeline([["GET", name], ["PTTL", name]], timeout: timeout)
        switch (replies[0], replies[1]) {
        case (.bulkString(let bytes), .integer(let left)) where left > 0: return SharedEntry(bytes: bytes, timeToLive: .milliseconds(left))
        case (.null, _), (.bulkString, .integer): return nil  // absent, or expiring between the two commands
        case let other: throw RedisError.unexpectedReply("GET/PTTL answered \(other)")
        }
    }

    /// Sets the value and files it under its tags, unless a marker of the key or a tag says an invalidation came
    /// meanwhile. A tag's set lives as long as its longest-lived member (its expiry is only ever extended).
    static let write = RedisScript(
        """
        local tags = tonumber(ARGV[3])
        local ttl = tonumber(ARGV[2])
        if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
        for i = 1, tags do
          if redis.call('EXISTS', KEYS[2 + tags + i]) == 1 then return 0 end
        end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
        for i = 1, tags do
          redis.call('SADD', KEYS[2 + i], KEYS[1])
          if redis.call('PTTL', KEYS[2 + i]) < ttl then redis.call('PEXPIRE', KEYS[2 + i], ttl) end
        end
        return 1
        """)

    public func write(cache: String, key: String, bytes: ByteBuffer, tags: [String], timeToLive: Duration) async throws {
        let keys = [self.key(cache, key), marker(cache, key)] + tags.map { tagSet(cache, $0) } + tags.map { tagMarker(cache, $0) }
        _ = try await client.eval(
            Self.write, keys: keys.map { RedisArgument($0) },
            arguments: [RedisArgument(bytes), RedisArgument(max(1, timeToLive.wholeMilliseconds)), RedisArgument(tags.count)], timeout: timeout)
    }

    /// Deletes the keys and every key of the tags, leaves the markers, and publishes the invalidation: one step. (The
    /// members of a tag's set are deleted without being declared in KEYS: fine on one Redis, not on a cluster, where
    /// a tag's keys would have to share a hash slot.)
    static let invalidate = RedisScript(
        """
        local keys = tonumber(ARGV[1])
        for i = 1, keys do
          redis.call('DEL', KEYS[2 * i - 1])
          redis.call('SET', KEYS[2 * i], '1', 'PX', ARGV[2])
        end
        for i = 2 * keys + 1, #KEYS, 2 do
          local members = redis.call('SMEMBERS', KEYS[i])
          for _, member in ipairs(members) do redis.call('DEL', member) end
          redis.call('DEL', KEYS[i])
          redis.call('SET', KEYS[i + 1], '1', 'PX', ARGV[2])
        end
        redis.call('PUBLISH', ARGV[3], ARGV[4])
        return 1
        """)

    public func invalidate(_ invalidation: CacheInvalidation) async throws {
        let cache = invalidation.cache
        var keys: [String] = []
        for key in invalidation.keys { keys += [self.key(cache, key), marker(cache, key)] }
        for tag in invalidation.tags { keys += [tagSet(cache, tag), tagMarker(cache, tag)] }
        let message = try JSONEncoder().encode(invalidation)
        // Not the read's tight timeout: an invalidation that gives up too early is retried, and meanwhile this
        // process skips the shared level.
        _ = try await client.eval(
            Self.invalidate, keys: keys.map { RedisArgument($0) },
            arguments: [
                RedisArgument(invalidation.keys.count), RedisArgument(guardTime.wholeMilliseconds), RedisArgument(channel),
                RedisArgument(ByteBuffer(bytes: message)),
            ])
    }

    public func subscribe(_ handler: @escaping @Sendable (CacheInvalidation) -> Void) {
        self.handler.withLockedValue { $0 = handler }
    }
}
