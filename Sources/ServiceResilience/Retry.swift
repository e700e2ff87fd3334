import NIOConcurrencyHelpers

/// When and how often to retry a call: exponential backoff with full jitter, only for calls that are safe to repeat.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(maxAttempts: Int = 3, baseDelay: Duration = .milliseconds(50), maxDelay: Duration = .seconds(2)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The pause after failed attempt `attempt` (1-based): uniformly random between zero and
    /// `min(maxDelay, baseDelay × 2^(attempt-1))` ("full jitter"), `random` being a draw from 0...1.
    public func delay(afterAttempt attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let ceiling = min(maxDelay, baseDelay * (1 << min(max(attempt - 1, 0), 30)))
        return ceiling * min(max(random, 0), 1)
    }

    /// Whether a request may be sent again: idempotent methods (RFC 9110: GET, HEAD, OPTIONS, PUT, DELETE) always,
    /// others only with an `Idempotency-Key`.
    public static func isSafeToRetry(method: String, hasIdempotencyKey: Bool) -> Bool {
        ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"].contains(method.uppercased()) || hasIdempotencyKey
    }
}

/// A retry budget: retries may add at most `ratio` of the calls made (plus a small floor per second), so retries in
/// several layers cannot multiply load on a struggling service. A token bucket: each call deposits `ratio` tokens,
/// each retry takes one; the floor refills `minimumPerSecond` tokens a second. Pure, driven by instants.
public struct RetryBudgetMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public let ratio: Double
    public let minimumPerSecond: Double
    /// Tokens at most (ten seconds' worth of the floor, or 10).
    public let capacity: Double
    public private(set) var tokens: Double
    private var last: Instant?

    public init(ratio: Double = 0.2, minimumPerSecond: Double = 10) {
        self.ratio = ratio
        self.minimumPerSecond = minimumPerSecond
        self.capacity = max(minimumPerSecond * 10, 10)
        self.tokens = capacity
    }

    /// A call was made at `now`.
    public mutating func recordCall(now: Instant) {
        refill(now: now)
        tokens = min(capacity, tokens + ratio)
    }

    /// Whether a retry may be made at `now` (taking a token when it may).
    public mutating func tryRetry(now: Instant) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    mutating func refill(now: Instant) {
        if let last {
            let elapsed = last.duration(to: now)
            tokens = min(capacity, tokens + max(elapsed.inSeconds, 0) * minimumPerSecond)
        }
        last = now
    }
}

/// A bulkhead: at most `maxConcurrent` calls run at once, at most `maxQueued` wait for a slot, the rest are refused
/// at once — so one slow dependency cannot take every task of the caller.
public final class Bulkhead: Sendable {
    public struct Full: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "bulkhead '\(name)' is full" }
    }

    private struct State {
        var running = 0
        var waiting: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID = 0
    }

    public let name: String
    public let maxConcurrent: Int
    public let maxQueued: Int
    private let state = NIOLockedValueBox(State())

    public init(name: String, maxConcurrent: Int, maxQueued: Int = 0) {
        self.name = name
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
    }

    /// Calls running and waiting now.
    public var load: (running: Int, waiting: Int) { state.withLockedValue { ($0.running, $0.waiting.count) } }

    /// Runs `operation` in a slot, waiting in the queue when there is room, throwing ``Full`` when there is none.
    public func run<T: Sendable>(_ operation: @Sendable () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await operation()
    }

    func acquire() async throws {
        enum Admission { case now, queued(Int), refused }
        let ticket = state.withLockedValue { state -> Admission in
            if state.running < maxConcurrent {
                state.running += 1
                return .now
            }
            guard state.waiting.count < maxQueued else { return .refused }
            state.nextID += 1
            return .queued(state.nextID)
        }
        switch ticket {
        case .now: return
        case .refused: throw Full(name: name)
        case .queued(let id):
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let admitted = state.withLockedValue { state -> Bool in
                        // A slot may have freed between the check above and now.
                        if state.running < maxConcurrent {
                            state.running += 1
                            return true
                        }
                        state.waiting.append((id, continuation))
                        return false
                    }
                    if admitted { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
                    guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiting.remove(at: index).continuation
                }
                waiter?.resume(throwing: CancellationError())
            }
        }
    }

    func release() {
        let next = state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
            guard !state.waiting.isEmpty else {
                state.running -= 1
                return nil
            }
            // The slot passes straight to the next waiter (running stays the same).
            return state.waiting.removeFirst().continuation
        }
        next?.resume()
    }
}
