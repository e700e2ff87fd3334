/// Polls `condition` every 10 ms until it holds; throws ``TimedOut`` naming `what` once `timeout` has passed without it.
/// For conditions that come about in another task or process (a consumer handled an event, a service restarted).
public func eventually(_ what: String, timeout: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Polls `value` every 10 ms until it answers something, and answers that; throws ``TimedOut`` naming `what` once
/// `timeout` has passed without it.
public func eventually<T>(_ what: String, timeout: Duration = .seconds(15), _ value: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let found = try await value() { return found }
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A condition a test waited for did not come about in time.
public struct TimedOut: Error, CustomStringConvertible {
    public var what: String

    public init(what: String) {
        self.what = what
    }

    public var description: String { "timed out waiting for \(what)" }
}
