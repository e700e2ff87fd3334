import NIOCore
import ServiceLifecycle

/// An invalidation: keys and tags of one cache, or everything in it (`all`), said by the instance `origin`.
public struct CacheInvalidation: Codable, Sendable, Equatable {
    /// "Anything may have changed" for every cache of a process (a backplane that may have missed messages).
    public static let everything = CacheInvalidation(cache: "*", all: true, origin: "")

    public var cache: String
    public var keys: [String]
    public var tags: [String]
    public var all: Bool
    /// The process that invalidated (it applied the invalidation itself and ignores its own message).
    public var origin: String

    public init(cache: String, keys: [String] = [], tags: [String] = [], all: Bool = false, origin: String) {
        self.cache = cache
        self.keys = keys
        self.tags = tags
        self.all = all
        self.origin = origin
    }
}

/// A value found in the shared level.
public struct SharedEntry: Sendable {
    public var bytes: ByteBuffer
    /// What is left of its life there.
    public var timeToLive: Duration

    public init(bytes: ByteBuffer, timeToLive: Duration) {
        self.bytes = bytes
        self.timeToLive = timeToLive
    }
}

/// What the caches of one process share with every other instance: the invalidations (so every instance's in-process
/// level forgets what any instance invalidated), and, when there is one, the shared second level.
///
/// Two implementations: ``RedisCacheBackplane`` (L2 in Redis, invalidations over Redis pub/sub) and the event log's
/// (no L2, invalidations through a table of the shared event log; see `ServiceMessaging.EventLogCacheBackplane`).
public protocol CacheBackplane: Sendable {
    /// Its background work (a subscription, a poller), run with the process's services.
    var services: [any Service] { get }

    /// Whether invalidations are being heard now. While they are not (Redis unreachable, the event log unreadable),
    /// an in-process copy may have been invalidated elsewhere, so caches read from the source instead.
    var isListening: Bool { get }

    /// Whether ``read(cache:key:)`` can find anything (a shared second level exists).
    var hasSharedLevel: Bool { get }

    /// The second level's bytes for `key` of `cache` and how long they have left to live, nil when absent; throws when
    /// the store fails.
    func read(cache: String, key: String) async throws -> SharedEntry?

    /// Stores `bytes` for `key` of `cache` with `tags`, living `timeToLive`, unless an invalidation of the key or one of
    /// its tags happened recently (then the load that produced it may have read the old value); throws when it fails.
    func write(cache: String, key: String, bytes: ByteBuffer, tags: [String], timeToLive: Duration) async throws

    /// Removes the invalidated entries from the second level and tells every other instance.
    func invalidate(_ invalidation: CacheInvalidation) async throws

    /// Starts handing every instance's invalidations to `handler`; an invalidation with `all` set also stands for
    /// "messages may have been missed" (after a reconnect or a gap), so the handler forgets everything.
    func subscribe(_ handler: @escaping @Sendable (CacheInvalidation) -> Void)
}
