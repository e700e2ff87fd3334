import NIOConcurrencyHelpers

/// An error no retry can help with (an open breaker, a caller's deadline that has passed): never retried.
public protocol FinalError: Error {}

/// A retry budget shared by the calls to one dependency, on a clock (see ``RetryBudgetMachine``).
public final class RetryBudget<C: Clock>: Sendable where C.Duration == Duration {
    let clock: C
    let machine: NIOLockedValueBox<RetryBudgetMachine<C.Instant>>

    public init(ratio: Double = 0.2, minimumPerSecond: Double = 10, clock: C) {
        self.clock = clock
        self.machine = NIOLockedValueBox(RetryBudgetMachine(ratio: ratio, minimumPerSecond: minimumPerSecond))
    }

    public func recordCall() {
        let now = clock.now
        machine.withLockedValue { $0.recordCall(now: now) }
    }

    public func tryRetry() -> Bool {
        let now = clock.now
        return machine.withLockedValue { $0.tryRetry(now: now) }
    }
}

/// The policies guarding the calls to one dependency, stacked in one documented order:
///
///     bulkhead → retry (with its budget) → circuit breaker → timeout → the call
///
/// - The bulkhead is outermost: a call waits for (or is refused) a slot once, not once per attempt.
/// - Each attempt passes the breaker, so every failed attempt counts against it: with retries on the breaker still trips
///   after as many failed *attempts* as it is configured for. An open breaker fails the call at once and is not retried.
/// - The timeout bounds each attempt; a timed-out attempt is a failure for the breaker and may be retried.
/// - Only calls that are safe to repeat are retried (``RetryPolicy/isSafeToRetry(method:hasIdempotencyKey:)``), and
///   only while the budget allows.
public struct ResiliencePolicies<C: Clock>: Sendable where C.Duration == Duration {
    public var bulkhead: Bulkhead?
    public var retry: RetryPolicy?
    public var budget: RetryBudget<C>?
    public var breaker: CircuitBreaker<C>?
    public var timeout: Duration?
    let clock: C

    public init(
        clock: C, bulkhead: Bulkhead? = nil, retry: RetryPolicy? = nil, budget: RetryBudget<C>? = nil, breaker: CircuitBreaker<C>? = nil,
        timeout: Duration? = nil
    ) {
        self.clock = clock
        self.bulkhead = bulkhead
        self.retry = retry
        self.budget = budget
        self.breaker = breaker
        self.timeout = timeout
    }

    /// The attempt did not finish within the timeout.
    public typealias TimedOut = ServiceResilience.TimedOut

    /// Runs `operation` under the policies; `safeToRetry` says whether it may be repeated.
    public func run<T: Sendable>(safeToRetry: Bool, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        if let bulkhead {
            return try await bulkhead.run { try await retrying(safeToRetry: safeToRetry, operation) }
        }
        return try await retrying(safeToRetry: safeToRetry, operation)
    }

    func retrying<T: Sendable>(safeToRetry: Bool, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        budget?.recordCall()
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await guarded(operation)
            } catch let final as any FinalError {
                throw final
            } catch {
                guard safeToRetry, let retry, attempt < retry.maxAttempts, budget?.tryRetry() ?? true, !Task.isCancelled else { throw error }
                try await clock.sleep(for: retry.delay(afterAttempt: attempt))
            }
        }
    }

    func guarded<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard timeout != nil else {
            // The common case, without wrapping the operation in one more closure.
            if let breaker { return try await breaker.run(operation) }
            return try await operation()
        }
        let timed: @Sendable () async throws -> T = { [timeout, clock] in
            guard let timeout else { return try await operation() }
            return try await withTimeout(timeout, clock: clock, operation)
        }
        if let breaker { return try await breaker.run(timed) }
        return try await timed()
    }
}
