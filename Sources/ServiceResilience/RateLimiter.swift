import NIOConcurrencyHelpers

/// A limit of `limit` requests per `window`, written `100/60s` (units `ms`, `s`, `m`, `h`).
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    public var limit: Int
    public var window: Duration

    public init(limit: Int, window: Duration) {
        self.limit = limit
        self.window = window
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let text: String
        public var description: String { "not a rate limit: '\(text)' (expected e.g. 100/60s, 10/1m, 5/500ms, or off)" }
    }

    /// Parses `100/60s`; `off` is nil (no limit).
    public static func parse(_ text: String) throws -> RateLimit? {
        let text = String(text.filter { !$0.isWhitespace }).lowercased()
        if text == "off" { return nil }
        let parts = text.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let limit = Int(parts[0]), limit > 0 else { throw Invalid(text: text) }
        // A window in ms, s, m or h.
        guard !parts[1].hasSuffix("d"), let window = Duration.parse(String(parts[1])) else { throw Invalid(text: text) }
        return RateLimit(limit: limit, window: window)
    }

    /// `100/60s` (in the largest unit that divides the window exactly).
    public var description: String {
        let ms = Int(window.wholeMilliseconds)
        if ms % 1000 != 0 { return "\(limit)/\(ms)ms" }
        return "\(limit)/\(ms / 1000)s"
    }

    /// The window in whole seconds, rounded up (for headers).
    public var windowSeconds: Int { Self.seconds(rounding: window) }

    static func seconds(rounding duration: Duration) -> Int {
        Int(duration.wholeSecondsRoundedUp)
    }
}

/// What the limiter said about one request.
public struct RateLimitDecision: Sendable, Equatable {
    public var allowed: Bool
    public var limit: Int
    /// Requests left in the current window after this one.
    public var remaining: Int
    /// Time until the current window ends (when `remaining` is back to `limit`).
    public var resetAfter: Duration

    public init(allowed: Bool, limit: Int, remaining: Int, resetAfter: Duration) {
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.resetAfter = resetAfter
    }

    /// Seconds until the window resets, rounded up and at least 1 (`Retry-After`, `RateLimit-Reset`).
    public var resetSeconds: Int { max(1, RateLimit.seconds(rounding: resetAfter)) }
}

/// Fixed-window counters per key, pure: a key's window starts with its first request and lasts `window`; up to
/// `limit` requests are allowed in it. Expired windows are swept once the table holds `sweepAbove` keys, so memory is
/// bounded by the number of clients active within one window.
public struct RateLimiterMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    struct Window: Sendable {
        var start: Instant
        var count: Int
        /// This window's own length (one store serves limits of different windows).
        var length: Duration
    }

    private var windows: [String: Window] = [:]
    private let sweepAbove: Int
    private var nextSweep: Int

    public init(sweepAbove: Int = 10_000) {
        self.sweepAbove = sweepAbove
        self.nextSweep = sweepAbove
    }

    /// Keys with a live or expired window not yet swept.
    public var trackedKeys: Int { windows.count }

    /// Counts one request of `key` at `now` against `rate`.
    public mutating func take(_ key: String, rate: RateLimit, now: Instant) -> RateLimitDecision {
        if windows.count >= nextSweep { sweep(now: now) }
        var window = windows[key] ?? Window(start: now, count: 0, length: rate.window)
        if window.start.duration(to: now) >= rate.window {
            window = Window(start: now, count: 0, length: rate.window)
        }
        let resetAfter = rate.window - window.start.duration(to: now)
        guard window.count < rate.limit else {
            windows[key] = window
            return RateLimitDecision(allowed: false, limit: rate.limit, remaining: 0, resetAfter: resetAfter)
        }
        window.count += 1
        windows[key] = window
        return RateLimitDecision(allowed: true, limit: rate.limit, remaining: rate.limit - window.count, resetAfter: resetAfter)
    }

    /// What `take` would answer, without counting anything (for limits on failures, counted only once they happen).
    public func peek(_ key: String, rate: RateLimit, now: Instant) -> RateLimitDecision {
        guard let window = windows[key], window.start.duration(to: now) < rate.window else {
            return RateLimitDecision(allowed: true, limit: rate.limit, remaining: rate.limit, resetAfter: rate.window)
        }
        let resetAfter = rate.window - window.start.duration(to: now)
        return RateLimitDecision(
            allowed: window.count < rate.limit, limit: rate.limit, remaining: max(0, rate.limit - window.count), resetAfter: resetAfter)
    }

    /// Gives back one request of `key` counted in its current window (one that turned out not to count).
    public mutating func giveBack(_ key: String, rate: RateLimit, now: Instant) {
        guard var window = windows[key], window.start.duration(to: now) < rate.window, window.count > 0 else { return }
        window.count -= 1
        windows[key] = window
    }

    mutating func sweep(now: Instant) {
        windows = windows.filter { $0.value.start.duration(to: now) < $0.value.length }
        // Sweep again when the live table has doubled, so a steady population is not swept on every request.
        nextSweep = max(sweepAbove, windows.count * 2)
    }
}

/// Where rate-limit counters live. The in-memory store is per process; a shared store (a database, Redis) may fail,
/// which is why ``RateLimiter`` asks what to do then.
public protocol RateLimitStore: Sendable {
    func take(_ key: String, rate: RateLimit) throws -> RateLimitDecision
}

/// Counters in this process's memory, spread over 16 locks so event loops rarely wait on each other. On the continuous
/// clock (not generic: it is called through `any RateLimitStore`, where generic code would look its types up at every
/// call); the machine is tested on a manual clock.
public final class InMemoryRateLimitStore: RateLimitStore {
    let clock = ContinuousClock()
    let shards: [NIOLockedValueBox<RateLimiterMachine<ContinuousClock.Instant>>]

    public init(shards: Int = 16) {
        self.shards = (0..<max(1, shards)).map { _ in NIOLockedValueBox(RateLimiterMachine()) }
    }

    public func take(_ key: String, rate: RateLimit) throws -> RateLimitDecision {
        let now = clock.now
        let shard = shards[Int(UInt(bitPattern: key.hashValue) % UInt(shards.count))]
        return shard.withLockedValue { $0.take(key, rate: rate, now: now) }
    }
}

/// Counters shared by several processes (Redis): asynchronous, and able to fail or be slow, so every decision has a
/// deadline of its own.
public protocol SharedRateLimitStore: Sendable {
    /// Counts one request of `key` against `rate`, answering within `timeout` or throwing.
    func take(_ key: String, rate: RateLimit, timeout: Duration) async throws -> RateLimitDecision
}

/// A rate limiter over a store, with an explicit policy for when the store fails: never silently open. The failure
/// is reported (`onStoreFailure`, which should log it) and the request allowed or refused as configured.
public struct RateLimiter: Sendable {
    public enum FailurePolicy: String, Sendable {
        /// Let the request through (availability first).
        case allow
        /// Refuse it (protection first).
        case deny
    }

    /// The store in this process (nil when the counters are shared: ``shared``).
    public let store: (any RateLimitStore)?
    /// The store shared with other processes, and how long a decision may wait for it.
    public let shared: (store: any SharedRateLimitStore, timeout: Duration)?
    public let onFailure: FailurePolicy
    let report: @Sendable (any Error) -> Void

    public init(store: any RateLimitStore, onFailure: FailurePolicy = .allow, onStoreFailure report: @escaping @Sendable (any Error) -> Void) {
        self.store = store
        self.shared = nil
        self.onFailure = onFailure
        self.report = report
    }

    /// Counters shared with other processes; a decision the store has not made within `timeout` follows `onFailure`.
    public init(
        shared: any SharedRateLimitStore, timeout: Duration, onFailure: FailurePolicy = .allow,
        onStoreFailure report: @escaping @Sendable (any Error) -> Void
    ) {
        self.store = nil
        self.shared = (shared, timeout)
        self.onFailure = onFailure
        self.report = report
    }

    /// Counts one request of `key` against `rate` in the local store (nil when the store is shared: use the async
    /// ``take(_:rate:)-async``).
    public func take(_ key: String, rate: RateLimit) -> RateLimitDecision? {
        guard let store else { return nil }
        do {
            return try store.take(key, rate: rate)
        } catch {
            return failed(error, rate: rate)
        }
    }

    /// Counts one request of `key` against `rate`, in whichever store there is.
    public func take(_ key: String, rate: RateLimit) async -> RateLimitDecision {
        if let store {
            do {
                return try store.take(key, rate: rate)
            } catch {
                return failed(error, rate: rate)
            }
        }
        guard let shared else { return failed(nil, rate: rate) }
        do {
            return try await shared.store.take(key, rate: rate, timeout: shared.timeout)
        } catch {
            return failed(error, rate: rate)
        }
    }

    private func failed(_ error: (any Error)?, rate: RateLimit) -> RateLimitDecision {
        if let error { report(error) }
        return RateLimitDecision(allowed: onFailure == .allow, limit: rate.limit, remaining: 0, resetAfter: rate.window)
    }
}
