import NIOConcurrencyHelpers
import ServiceResilience

/// A ``WallClock`` — and a Swift `Clock`, for the toolkit's generic timers (breakers, limiters) — that stands still
/// until the test moves it with ``advance(by:)``: leases, backoffs and expiries of seconds or days are tested in no
/// time, and a sleeper wakes exactly when the clock reaches its deadline. One ``advance(by:)`` wakes a sleeper once, however
/// far it goes: a loop that sleeps a second and is advanced by an hour runs once, not 3600 times.
///
/// Written here because the library for this, pointfreeco/swift-clocks' `TestClock`, is a monotonic `Clock` (the
/// toolkit's timers need wall time, shared through a database) and its package needs swift-issue-reporting, which this
/// project's package mirror does not carry.
public final class ManualClock: WallClock, Clock {
    private struct Sleeper {
        var deadline: Duration
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Duration
        var sleepers: [UInt64: Sleeper] = [:]
        /// Sleeps cancelled before they were registered (their registration then ends at once).
        var cancelled: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state: NIOLockedValueBox<State>

    /// A clock at `sinceEpoch` (by default 2030-01-01T00:00:00Z: a round time, so stored milliseconds read easily).
    public init(sinceEpoch: Duration = .seconds(1_893_456_000)) {
        state = NIOLockedValueBox(State(now: sinceEpoch))
    }

    public var sinceEpoch: Duration { state.withLockedValue { $0.now } }

    /// A moment of this clock: its time since 1970.
    public struct Instant: InstantProtocol {
        public var sinceEpoch: Duration
        public func advanced(by duration: Duration) -> Instant { Instant(sinceEpoch: sinceEpoch + duration) }
        public func duration(to other: Instant) -> Duration { other.sinceEpoch - sinceEpoch }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.sinceEpoch < rhs.sinceEpoch }
    }

    public var now: Instant { Instant(sinceEpoch: sinceEpoch) }
    public var minimumResolution: Duration { .nanoseconds(1) }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await sleep { _ in deadline.sinceEpoch }
    }

    /// How many tasks sleep on this clock now.
    public var sleepers: Int { state.withLockedValue { $0.sleepers.count } }

    public func sleep(for duration: Duration) async throws {
        try await sleep { now in now + duration }
    }

    /// Sleeps until the deadline `deadline` computes from the clock's time, read under the same lock that registers the
    /// sleeper: an ``advance(by:)`` can come before or after, never between.
    private func sleep(deadline: @Sendable (_ now: Duration) -> Duration) async throws {
        let id = state.withLockedValue { state -> UInt64 in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Registration { case sleeping, due, cancelled }
                let registration = state.withLockedValue { state -> Registration in
                    if state.cancelled.remove(id) != nil { return .cancelled }
                    let due = deadline(state.now)
                    if due <= state.now { return .due }
                    state.sleepers[id] = Sleeper(deadline: due, continuation: continuation)
                    return .sleeping
                }
                switch registration {
                case .sleeping: break
                case .due: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let sleeper = state.withLockedValue { state -> Sleeper? in
                guard let sleeper = state.sleepers.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return sleeper
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
        // A sleep that ended normally leaves no mark behind.
        _ = state.withLockedValue { $0.cancelled.remove(id) }
    }

    /// Moves the clock on by `duration` and wakes every sleeper whose deadline it reached, earliest first.
    public func advance(by duration: Duration) {
        let due = state.withLockedValue { state -> [Sleeper] in
            state.now += max(duration, .zero)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for id in due.keys { state.sleepers.removeValue(forKey: id) }
            return due.values.sorted { $0.deadline < $1.deadline }
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// The time until the earliest sleeper's deadline (nil when nobody sleeps): what ``advance(by:)`` needs to wake it.
    public var nextDeadline: Duration? {
        state.withLockedValue { state in state.sleepers.values.map(\.deadline).min().map { $0 - state.now } }
    }

    /// Runs `body` while moving the clock on to the earliest sleeper's deadline whenever a task sleeps on it, until `body`
    /// returns: code that waits out backoffs, leases and deadlines runs through hours of them without real waiting.
    /// Time jumps as soon as anything sleeps, so drive only code whose waits are all on this clock.
    public func driving<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while !Task.isCancelled {
                    if let next = self.nextDeadline { self.advance(by: next) }
                    // Polled: a sleeper registers from another task, with nothing to wait on but the clock's state.
                    try await Task.sleep(for: .milliseconds(1))
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw CancellationError()
        }
    }

    /// Waits — in real time, up to `timeout` — until at least `count` tasks sleep on this clock, so that a test moves
    /// time on only once the code under test waits for it. Throws ``TimedOut`` at the deadline.
    public func waitForSleepers(_ count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        try await eventually("\(count) sleeper(s) on the manual clock", timeout: timeout) { sleepers >= count }
    }
}
