#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The clock of the toolkit's durable timers: leases, retry times and expiries that are stored in a database and
/// compared there by every process sharing it — so wall time (time since 1970), not a process's monotonic clock — and
/// the sleeps of the loops that wait for them.
///
/// Production code uses ``SystemClock``; tests pass a manual clock (`ServiceTesting.ManualClock`) and move time on
/// themselves, so a 30-second lease or a one-minute backoff is tested without waiting for it.
public protocol WallClock: Sendable {
    /// The time elapsed since 1970-01-01T00:00:00Z.
    var sinceEpoch: Duration { get }
    /// Suspends the task for `duration` of this clock's time; throws `CancellationError` when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

extension WallClock {
    /// Milliseconds since 1970: how the toolkit's tables store times.
    public var millis: Int64 { sinceEpoch.wholeMilliseconds }

    /// Milliseconds since 1970, `duration` from now.
    public func millis(after duration: Duration) -> Int64 { (sinceEpoch + duration).wholeMilliseconds }
}

/// The system's real-time clock (`CLOCK_REALTIME`) and `Task.sleep`.
public struct SystemClock: WallClock {
    public init() {}

    public var sinceEpoch: Duration {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return .seconds(Int64(now.tv_sec)) + .nanoseconds(Int64(now.tv_nsec))
    }

    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration)
    }
}

extension WallClock where Self == SystemClock {
    /// The system's real-time clock.
    public static var system: SystemClock { SystemClock() }
}
