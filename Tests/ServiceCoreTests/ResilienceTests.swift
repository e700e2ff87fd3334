import NIOConcurrencyHelpers
import ServiceResilience
import ServiceTesting
import Testing

/// An instant of a test's own time line.
struct TestInstant: InstantProtocol {
    var offset: Duration
    func advanced(by duration: Duration) -> TestInstant { TestInstant(offset: offset + duration) }
    func duration(to other: TestInstant) -> Duration { other.offset - offset }
    static func < (lhs: TestInstant, rhs: TestInstant) -> Bool { lhs.offset < rhs.offset }
}

@Suite struct ResilienceTests {
    typealias Machine = CircuitBreakerMachine<TestInstant>

    static func at(_ seconds: Double) -> TestInstant { TestInstant(offset: .milliseconds(Int(seconds * 1000))) }

    @Test func consecutiveFailuresTripAndHalfOpenAdmitsABoundedNumberOfTrials() {
        var breaker = Machine(configuration: .init(consecutiveFailures: 3, minimumCalls: 100, openDuration: .seconds(10), halfOpenCalls: 2))
        for second in 0..<3 {
            do {
                let decision = breaker.acquire(now: Self.at(Double(second)))
                #expect(decision == .allow)
            }
            breaker.record(success: false, duration: .milliseconds(5), now: Self.at(Double(second)))
        }
        #expect(breaker.state == .open(until: Self.at(12)))
        do {
            let decision = breaker.acquire(now: Self.at(11.9))
            #expect(decision == .reject)
        }
        // Time is up: two trial calls, no third.
        do {
            let decision = breaker.acquire(now: Self.at(12))
            #expect(decision == .allow)
        }
        do {
            let decision = breaker.acquire(now: Self.at(12.1))
            #expect(decision == .allow)
        }
        do {
            let decision = breaker.acquire(now: Self.at(12.2))
            #expect(decision == .reject)
        }
        #expect(breaker.state.name == "half-open")
        breaker.record(success: true, duration: .milliseconds(5), now: Self.at(12.3))
        #expect(breaker.state.name == "half-open")
        breaker.record(success: true, duration: .milliseconds(5), now: Self.at(12.4))
        #expect(breaker.state == .closed)
        do {
            let decision = breaker.acquire(now: Self.at(12.5))
            #expect(decision == .allow)
        }
    }

    @Test func aFailedTrialReopensForAnotherFullPeriod() {
        var breaker = Machine(configuration: .init(consecutiveFailures: 1, openDuration: .seconds(5), halfOpenCalls: 3))
        _ = breaker.acquire(now: Self.at(0))
        breaker.record(success: false, duration: .zero, now: Self.at(0))
        do {
            let decision = breaker.acquire(now: Self.at(5))
            #expect(decision == .allow)
        }
        breaker.record(success: false, duration: .zero, now: Self.at(6))
        #expect(breaker.state == .open(until: Self.at(11)))
        do {
            let decision = breaker.acquire(now: Self.at(10))
            #expect(decision == .reject)
        }
    }

    @Test func theFailureRateTripsOnlyWithEnoughCallsInTheWindow() {
        var breaker = Machine(configuration: .init(consecutiveFailures: 100, failureRate: 0.5, minimumCalls: 10, window: .seconds(10)))
        // Alternating: never two failures in a row; 9 calls with 5 failures is under the minimum number of calls.
        for call in 0..<9 {
            _ = breaker.acquire(now: Self.at(Double(call) * 0.1))
            breaker.record(success: call % 2 == 1, duration: .zero, now: Self.at(Double(call) * 0.1))
        }
        #expect(breaker.state == .closed)
        #expect(breaker.totals(now: Self.at(1)) == (9, 5))
        _ = breaker.acquire(now: Self.at(1))
        breaker.record(success: true, duration: .zero, now: Self.at(1))
        // Ten calls, five failures: 50 %.
        #expect(breaker.state.name == "open")
    }

    @Test func failuresOlderThanTheWindowRollOff() {
        var breaker = Machine(configuration: .init(consecutiveFailures: 100, failureRate: 0.5, minimumCalls: 4, window: .seconds(10)))
        for (second, success) in [(0.0, false), (1.0, true), (2.0, false)] {
            _ = breaker.acquire(now: Self.at(second))
            breaker.record(success: success, duration: .zero, now: Self.at(second))
        }
        // Twelve seconds on, the early failures are out of the window: two successes and one failure stay closed.
        for (second, success) in [(12.5, true), (13.0, false), (13.5, true), (14.0, true)] {
            _ = breaker.acquire(now: Self.at(second))
            breaker.record(success: success, duration: .zero, now: Self.at(second))
        }
        #expect(breaker.state == .closed)
        #expect(breaker.totals(now: Self.at(14)).failures == 1)
    }

    @Test func slowCallsCountAsFailures() {
        var breaker = Machine(configuration: .init(consecutiveFailures: 2, slowCall: .milliseconds(100)))
        _ = breaker.acquire(now: Self.at(0))
        breaker.record(success: true, duration: .milliseconds(150), now: Self.at(0))
        _ = breaker.acquire(now: Self.at(1))
        breaker.record(success: true, duration: .milliseconds(99), now: Self.at(1))
        #expect(breaker.state == .closed)
        for second in [2.0, 3.0] {
            _ = breaker.acquire(now: Self.at(second))
            breaker.record(success: true, duration: .milliseconds(500), now: Self.at(second))
        }
        #expect(breaker.state.name == "open")
    }

    @Test func theBreakerOnAClockRefusesAtOnceAndReportsItsChanges() async throws {
        let clock = ManualClock()
        let changes = NIOLockedValueBox<[String]>([])
        let breaker = CircuitBreaker(
            name: "payment", configuration: .init(consecutiveFailures: 2, openDuration: .seconds(30), halfOpenCalls: 1), clock: clock
        ) { _, from, to in changes.withLockedValue { $0.append("\(from)→\(to)") } }
        struct Down: Error {}
        let calls = NIOLockedValueBox(0)
        for _ in 0..<2 {
            await #expect(throws: Down.self) {
                try await breaker.run {
                    calls.withLockedValue { $0 += 1 }; throw Down()
                }
            }
        }
        // Open: refused without calling.
        await #expect(throws: CircuitBreaker<ManualClock>.Open.self) { try await breaker.run { calls.withLockedValue { $0 += 1 } } }
        #expect(calls.withLockedValue { $0 } == 2)
        clock.advance(by: .seconds(30))
        try await breaker.run { calls.withLockedValue { $0 += 1 } }
        #expect(breaker.state == "closed")
        #expect(changes.withLockedValue { $0 } == ["closed→open", "open→half-open", "half-open→closed"])
    }

    @Test func backoffHasFullJitterUnderADoublingCap() {
        let policy = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        #expect(policy.delay(afterAttempt: 1, random: 0) == .zero)
        #expect(policy.delay(afterAttempt: 1, random: 1) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 2, random: 1) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 4, random: 1) == .milliseconds(800))
        #expect(policy.delay(afterAttempt: 5, random: 1) == .seconds(1))
        #expect(policy.delay(afterAttempt: 30, random: 1) == .seconds(1))
        #expect(policy.delay(afterAttempt: 3, random: 0.5) == .milliseconds(200))
        for _ in 0..<100 {
            let delay = policy.delay(afterAttempt: 3)
            #expect(delay >= .zero && delay <= .milliseconds(400))
        }
    }

    @Test func onlyIdempotentRequestsOrOnesWithAKeyAreRetried() {
        for method in ["GET", "head", "PUT", "DELETE", "OPTIONS"] { #expect(RetryPolicy.isSafeToRetry(method: method, hasIdempotencyKey: false)) }
        for method in ["POST", "PATCH"] {
            #expect(!RetryPolicy.isSafeToRetry(method: method, hasIdempotencyKey: false))
            #expect(RetryPolicy.isSafeToRetry(method: method, hasIdempotencyKey: true))
        }
    }

    @Test func theRetryBudgetLimitsRetriesToAShareOfCalls() {
        var budget = RetryBudgetMachine<TestInstant>(ratio: 0.2, minimumPerSecond: 0)
        // Starts with its capacity (10), then runs dry.
        let first = (0..<11).map { _ in budget.tryRetry(now: Self.at(0)) }
        #expect(first == Array(repeating: true, count: 10) + [false])
        // Five calls earn one retry.
        for _ in 0..<5 { budget.recordCall(now: Self.at(1)) }
        let earned = (0..<2).map { _ in budget.tryRetry(now: Self.at(1)) }
        #expect(earned == [true, false])
        // A floor refills with time: two a second.
        var floored = RetryBudgetMachine<TestInstant>(ratio: 0.1, minimumPerSecond: 2)
        let drained = (0..<21).map { _ in floored.tryRetry(now: Self.at(0)) }
        #expect(drained.last == false)
        let refilled = (0..<2).map { _ in floored.tryRetry(now: Self.at(0.5)) }
        #expect(refilled == [true, false])
    }

    @Test func aFullBulkheadRefusesAndAQueuedCallRunsWhenASlotFrees() async throws {
        let bulkhead = Bulkhead(name: "inventory", maxConcurrent: 1, maxQueued: 1)
        let (gate, opener) = AsyncStream<Void>.makeStream()
        let ran = NIOLockedValueBox<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await bulkhead.run {
                    ran.withLockedValue { $0.append("first") }
                    for await _ in gate { break }
                }
            }
            while bulkhead.load.running < 1 { try await Task.sleep(for: .milliseconds(1)) }
            group.addTask { try await bulkhead.run { ran.withLockedValue { $0.append("queued") } } }
            while bulkhead.load.waiting < 1 { try await Task.sleep(for: .milliseconds(1)) }
            await #expect(throws: Bulkhead.Full.self) { try await bulkhead.run { ran.withLockedValue { $0.append("third") } } }
            opener.yield()
            try await group.waitForAll()
        }
        #expect(ran.withLockedValue { $0 } == ["first", "queued"])
        #expect(bulkhead.load == (0, 0))
    }
}

/// A clock whose sleeps end at once, moving its time to their deadline: retries and timeouts run without waiting.
final class SteppingClock: Clock, Sendable {
    private let current = NIOLockedValueBox(TestInstant(offset: .zero))
    var now: TestInstant { current.withLockedValue { $0 } }
    var minimumResolution: Duration { .nanoseconds(1) }
    func sleep(until deadline: TestInstant, tolerance: Duration?) async throws {
        try Task.checkCancellation()
        current.withLockedValue { $0 = max($0, deadline) }
        await Task.yield()
    }
}

@Suite struct ResiliencePolicyStackTests {
    struct Down: Error {}

    @Test func theBreakerStillTripsWhenRetriesAreOnAndAnOpenBreakerIsNotRetried() async throws {
        let clock = SteppingClock()
        let breaker = CircuitBreaker(name: "order", configuration: .init(consecutiveFailures: 4, openDuration: .seconds(30)), clock: clock)
        let policies = ResiliencePolicies(clock: clock, retry: RetryPolicy(maxAttempts: 3), breaker: breaker)
        let attempts = NIOLockedValueBox(0)
        let failing: @Sendable () async throws -> Int = {
            attempts.withLockedValue { $0 += 1 }
            throw Down()
        }
        // First call: three attempts, three failures counted by the breaker.
        await #expect(throws: Down.self) { try await policies.run(safeToRetry: true, failing) }
        #expect(attempts.withLockedValue { $0 } == 3)
        #expect(breaker.state == "closed")
        // Second call: its first attempt is the fourth failure and trips the breaker; the retry meets the open breaker.
        await #expect(throws: CircuitBreaker<SteppingClock>.Open.self) { try await policies.run(safeToRetry: true, failing) }
        #expect(attempts.withLockedValue { $0 } == 4)
        #expect(breaker.state == "open")
        // While open, calls fail at once without reaching the dependency.
        await #expect(throws: CircuitBreaker<SteppingClock>.Open.self) { try await policies.run(safeToRetry: true, failing) }
        #expect(attempts.withLockedValue { $0 } == 4)
    }

    @Test func unsafeCallsAreNotRetriedAndTheBudgetStopsRetries() async throws {
        let clock = SteppingClock()
        let attempts = NIOLockedValueBox(0)
        let failing: @Sendable () async throws -> Int = {
            attempts.withLockedValue { $0 += 1 }
            throw Down()
        }
        let retrying = ResiliencePolicies(clock: clock, retry: RetryPolicy(maxAttempts: 5))
        await #expect(throws: Down.self) { try await retrying.run(safeToRetry: false, failing) }
        #expect(attempts.withLockedValue { $0 } == 1)

        let budget = RetryBudget(ratio: 0, minimumPerSecond: 0, clock: clock)
        while budget.tryRetry() {}
        let budgeted = ResiliencePolicies(clock: clock, retry: RetryPolicy(maxAttempts: 5), budget: budget)
        attempts.withLockedValue { $0 = 0 }
        await #expect(throws: Down.self) { try await budgeted.run(safeToRetry: true, failing) }
        #expect(attempts.withLockedValue { $0 } == 1)
    }

    @Test func eachAttemptIsBoundedByTheTimeoutAndASuccessfulRetryAnswers() async throws {
        let clock = SteppingClock()
        let attempts = NIOLockedValueBox(0)
        let cutOff = NIOLockedValueBox(false)
        let policies = ResiliencePolicies(clock: clock, retry: RetryPolicy(maxAttempts: 2), timeout: .seconds(1))
        let value = try await policies.run(safeToRetry: true) { () async throws -> String in
            let attempt = attempts.withLockedValue { count -> Int in
                count += 1
                return count
            }
            if attempt == 1 {
                // The first attempt never answers: only the timeout (cancelling it) ends it.
                let (never, keepOpen) = AsyncStream<Void>.makeStream()
                for await _ in never {}
                withExtendedLifetime(keepOpen) {}
                cutOff.withLockedValue { $0 = Task.isCancelled }
                throw CancellationError()
            }
            return "answered"
        }
        #expect(value == "answered")
        #expect(attempts.withLockedValue { $0 } == 2)
        #expect(cutOff.withLockedValue { $0 })
    }
}

/// The tests' manual clock: what every timer test above and in the saga and messaging suites stands on.
@Suite struct ManualClockTests {
    @Test func aSleeperWakesWhenTheClockReachesItsDeadlineAndACancelledOneThrows() async throws {
        let clock = ManualClock()
        let start = clock.millis
        let woke = NIOLockedValueBox<Int64?>(nil)
        let sleeper = Task {
            try await clock.sleep(for: .seconds(10))
            woke.withLockedValue { $0 = clock.millis }
        }
        try await clock.waitForSleepers()
        #expect(clock.nextDeadline == .seconds(10))
        clock.advance(by: .milliseconds(9999))
        #expect(clock.sleepers == 1)
        clock.advance(by: .milliseconds(1))
        try await sleeper.value
        #expect(woke.withLockedValue { $0 } == start + 10_000)

        let cancelled = Task { try await clock.sleep(for: .seconds(60)) }
        try await clock.waitForSleepers()
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(clock.sleepers == 0)
        // Cancelled before it began sleeping: it throws at once instead of sleeping.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await clock.sleep(for: .seconds(60))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(clock.sleepers == 0)
    }

    @Test func asASwiftClockItSleepsUntilAnAbsoluteInstant() async throws {
        let clock = ManualClock()
        let deadline = clock.now.advanced(by: .seconds(5))
        // Time that passes before the sleep registers does not push its deadline back.
        clock.advance(by: .seconds(2))
        let sleeper = Task { try await clock.sleep(until: deadline, tolerance: nil) }
        try await clock.waitForSleepers()
        #expect(clock.nextDeadline == .seconds(3))
        clock.advance(by: .seconds(3))
        try await sleeper.value
        #expect(clock.now == deadline)
    }

    @Test func drivingRunsThroughAnHourOfBackoffsAtOnce() async throws {
        let clock = ManualClock()
        let start = clock.sinceEpoch
        let naps = try await clock.driving {
            var naps = 0
            while clock.sinceEpoch - start < .seconds(3600) {
                try await clock.sleep(for: .seconds(60))
                naps += 1
            }
            return naps
        }
        #expect(naps == 60)
        #expect(clock.sinceEpoch - start == .seconds(3600))
    }
}
