/// How one cache behaves. Every bound is per process.
public struct CacheConfiguration: Sendable {
    /// How long a loaded value is served as it is.
    public var timeToLive: Duration
    /// How long "not found" is remembered (negative caching); zero: never.
    public var negativeTimeToLive: Duration
    /// How long past its time to live a value is still served while one load refreshes it (stale-while-revalidate);
    /// zero: an expired value is a miss.
    public var staleWhileRevalidate: Duration
    /// Entries kept in process at most.
    public var maxEntries: Int
    /// Bytes kept in process at most (each entry counted by its encoded size plus its key).
    public var maxBytes: Int
    /// Whether values go to the shared level (Redis) when there is one. Off keeps them in each process only (for
    /// personal data that should not leave the service); invalidations still reach every instance.
    public var sharedLevel: Bool
    /// Whether the cache is used at all (off: every read loads; for comparisons and for turning it off in an incident).
    public var enabled: Bool

    public init(
        timeToLive: Duration = .seconds(60), negativeTimeToLive: Duration = .zero, staleWhileRevalidate: Duration = .zero,
        maxEntries: Int = 10_000, maxBytes: Int = 16 << 20, sharedLevel: Bool = true, enabled: Bool = true
    ) {
        self.timeToLive = timeToLive
        self.negativeTimeToLive = negativeTimeToLive
        self.staleWhileRevalidate = staleWhileRevalidate
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
        self.sharedLevel = sharedLevel
        self.enabled = enabled
    }
}
