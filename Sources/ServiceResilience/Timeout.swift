/// An operation did not finish within its time.
public struct TimedOut: Error, CustomStringConvertible {
    public let timeout: Duration
    public init(timeout: Duration) { self.timeout = timeout }
    public var description: String { "no answer within \(timeout)" }
}

/// Runs `body`, cancelling it and throwing ``TimedOut`` when `clock` reaches `timeout` first. (A task group: the
/// answer waits for `body` to end once cancelled, so `body` must honour cancellation.)
public func withTimeout<T: Sendable, C: Clock>(
    _ timeout: Duration, clock: C, _ body: @escaping @Sendable () async throws -> T
) async throws -> T where C.Duration == Duration {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await clock.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimedOut(timeout: timeout) }
        return value
    }
}

/// ``withTimeout(_:clock:_:)`` on the continuous clock.
public func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withTimeout(timeout, clock: ContinuousClock(), body)
}
