import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceResilience

/// A failed check whose description is fit for the public health report (no host names, SQL or driver text).
public protocol HealthCheckFailure: Error, CustomStringConvertible {}

/// Runs named dependency checks concurrently, as the guide's `HealthChecker`: each check passes by returning and fails by
/// throwing (or by taking longer than `timeout`).
public struct HealthChecker: Sendable {
    /// One check: returns when the dependency is fine, throws when it is not.
    public typealias Check = @Sendable () async throws -> Void

    /// The result of one check.
    public struct CheckResult: Codable, Sendable, Equatable {
        public var status: Status
        /// Milliseconds the check took.
        public var responseTime: Int
        public var error: String?
        /// The checked dependency's own checks (the gateway shows each service's).
        public var checks: [String: CheckResult]?

        public init(status: Status, responseTime: Int, error: String? = nil, checks: [String: CheckResult]? = nil) {
            self.status = status
            self.responseTime = responseTime
            self.error = error
            self.checks = checks
        }
    }

    /// `healthy` or `unhealthy`.
    public enum Status: String, Codable, Sendable {
        case healthy
        case unhealthy
    }

    /// The guide's report: `{status, timestamp, checks}`.
    public struct Report: Codable, Sendable {
        public var status: Status
        public var timestamp: String
        public var checks: [String: CheckResult]
    }

    struct TimedOut: HealthCheckFailure {
        var description: String { "check timed out" }
    }

    static let logger = Logger(label: "health")

    private var checks: [(name: String, check: @Sendable () async throws -> [String: CheckResult]?)] = []
    /// Longest a single check may take before it counts as failed.
    public var timeout: Duration

    public init(timeout: Duration = .seconds(2)) {
        self.timeout = timeout
    }

    /// Adds a check named `name`.
    public mutating func addCheck(_ name: String, _ check: @escaping Check) {
        self.checks.append(
            (
                name,
                {
                    try await check(); return nil
                }
            ))
    }

    /// Adds a check named `name` whose dependency reports checks of its own (shown nested); it fails by throwing or when
    /// one of them is unhealthy.
    public mutating func addDetailedCheck(_ name: String, _ check: @escaping @Sendable () async throws -> [String: CheckResult]?) {
        self.checks.append((name, check))
    }

    /// Runs every check at once and reports; overall `healthy` only if every check is.
    public func run() async -> Report {
        let timeout = self.timeout
        let results = await withTaskGroup(of: (String, CheckResult).self) { group in
            for (name, check) in self.checks {
                group.addTask {
                    let start = ContinuousClock.now
                    do {
                        let nested = try await Self.withTimeout(timeout, check)
                        let healthy = nested?.values.allSatisfy { $0.status == .healthy } ?? true
                        return (
                            name, CheckResult(status: healthy ? .healthy : .unhealthy, responseTime: Self.milliseconds(since: start), checks: nested)
                        )
                    } catch {
                        // Only a failure written for the report shows its text; any other error (a driver's, which may
                        // name hosts or SQL) is logged here and shown as "unavailable".
                        let shown = (error as? any HealthCheckFailure)?.description ?? "unavailable"
                        if !(error is any HealthCheckFailure) {
                            Self.logger.warning("Health check failed", metadata: ["check": "\(name)", "error": "\(error)"])
                        }
                        return (name, CheckResult(status: .unhealthy, responseTime: Self.milliseconds(since: start), error: shown))
                    }
                }
            }
            var results: [String: CheckResult] = [:]
            for await (name, result) in group { results[name] = result }
            return results
        }
        let healthy = results.values.allSatisfy { $0.status == .healthy }
        return Report(
            status: healthy ? .healthy : .unhealthy,
            timestamp: Timestamp.now(),
            checks: results
        )
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        Int((ContinuousClock.now - start).wholeMilliseconds)
    }

    /// Runs `check` in its own task and stops waiting at `timeout` even when the check ignores cancellation (a lock
    /// wait, a blocked driver): a task group would wait for its child, and the report would hang with it.
    static func withTimeout<T: Sendable>(_ timeout: Duration, _ check: @escaping @Sendable () async throws -> T) async throws -> T {
        let outcome = NIOLockedValueBox<CheckedContinuation<T, any Error>?>(nil)
        let finish: @Sendable (Result<T, any Error>) -> Void = { result in
            outcome.withLockedValue { continuation in
                continuation?.resume(with: result)
                continuation = nil
            }
        }
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        let value = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            outcome.withLockedValue { $0 = continuation }
            work = Task {
                do {
                    finish(.success(try await check()))
                } catch {
                    finish(.failure(error))
                }
            }
            timer = Task {
                try? await Task.sleep(for: timeout)
                finish(.failure(TimedOut()))
            }
        }
        work?.cancel()
        timer?.cancel()
        return value
    }
}
