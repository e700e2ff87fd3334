import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceResilience
import ServiceSaga
import ServiceTesting
import Testing

/// Sagas that never give up on a transient failure while their limits allow, an operator's retry, concurrent recovery,
/// and a graceful stop that lets running sagas finish.
@Suite struct SagaPersistenceTests {
    typealias Trip = SagaTests.Trip

    /// A definition whose `failing` step (or its compensation) throws a transient error `times` times.
    /// Its backoff grows from a second to ten minutes; its deadline and compensation limit are the defaults (two minutes,
    /// a day) unless given — on a ``ManualClock`` they pass without waiting.
    static func flaky(
        step failing: String, times: Int, inCompensation: Bool = false, deadline: Duration = .seconds(120), limit: Duration = .seconds(86_400)
    ) -> SagaDefinition<Trip> {
        let left = NIOLockedValueBox(times)
        let fail: @Sendable (String) throws -> Void = { name in
            if name == failing,
                left.withLockedValue({ left in
                    defer { left -= 1 }; return left > 0
                })
            {
                throw CancellationError()
            }
        }
        let steps = ["reserve", "charge", "create"].map { name in
            SagaStep<Trip>(
                name, timeout: .seconds(5),
                action: { state, _ in
                    if !inCompensation { try fail(name) }
                    if inCompensation, name == "create" { throw SagaStepFailure(status: 409, message: "refused") }
                    state.done.append(name)
                },
                compensation: { _, _ in if inCompensation { try fail(name) } }
            )
        }
        return SagaDefinition(
            name: "trip", steps: steps, baseBackoff: .seconds(1), maxBackoff: .seconds(600), deadline: deadline, compensationLimit: limit
        )
    }

    @Test(arguments: TestDatabase.available)
    func aStepRetriesATransientFailureForAsLongAsTheDeadlineAllows(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            // Six failures in a row (a called service restarting for a minute) and still completed: no attempt count, the
            // deadline (an hour here).
            let clock = ManualClock()
            let patient = SagaTests.orchestrator(Self.flaky(step: "charge", times: 6, deadline: .seconds(3600)), database, clock: clock)
            try await patient.start(id: "patient", state: Trip())
            #expect(try await clock.driving { try await patient.run(id: "patient") }?.status == .completed)
            // Past the deadline it compensates, answering 503 (unavailable), never `failed` — and not before it: the backoff
            // grows to ten minutes, so it gives up at most that long before the hour is over (and past it only by the
            // lease renewals, ten seconds each, the clock may have jumped to while an attempt ran: bounded here by ten
            // minutes of them).
            let late = SagaTests.orchestrator(Self.flaky(step: "charge", times: 1_000_000, deadline: .seconds(3600)), database, clock: clock)
            let start = clock.sinceEpoch
            try await late.start(id: "late", state: Trip())
            let record = try #require(try await clock.driving { try await late.run(id: "late") })
            #expect(record.status == .compensated && record.errorStatus == 503)
            let elapsed = clock.sinceEpoch - start
            #expect(elapsed >= .seconds(3000) && elapsed < .seconds(4200), "\(elapsed)")
        }
    }

    @Test(arguments: TestDatabase.available)
    func aCompensationRetriesUntilItSucceedsAndAnOperatorCanRetryOneThatHitItsLimit(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            // Failing for hours (twenty-five attempts, the backoff capped at ten minutes) and still compensated in the end.
            let clock = ManualClock()
            let patient = SagaTests.orchestrator(Self.flaky(step: "reserve", times: 25, inCompensation: true), database, clock: clock)
            try await patient.start(id: "patient", state: Trip())
            #expect(try await clock.driving { try await patient.run(id: "patient") }?.status == .compensated)

            // A compensation that fails past its limit (a day) leaves the saga for an operator…
            let stuck = SagaTests.orchestrator(Self.flaky(step: "reserve", times: 1_000_000, inCompensation: true), database, clock: clock)
            let start = clock.sinceEpoch
            try await stuck.start(id: "stuck", state: Trip())
            #expect(try await clock.driving { try await stuck.run(id: "stuck") }?.status == .failed)
            let elapsed = clock.sinceEpoch - start
            #expect(elapsed >= .seconds(86_400 - 600) && elapsed < .seconds(87_000), "\(elapsed)")
            let admin = SagaAdmin(database: database, name: "trip", logger: Logger(label: "admin"), clock: clock)
            #expect(try await admin.list(status: .failed).map(\.id) == ["stuck"])
            #expect(try await !admin.retry(id: "patient"))
            // …who retries it once the cause is mended: the recovery loop takes it up and finishes the compensation.
            #expect(try await admin.retry(id: "stuck"))
            let mended = SagaTests.orchestrator(Self.flaky(step: "reserve", times: 0, inCompensation: true), database, clock: clock)
            #expect(try await mended.orphans() == ["stuck"])
            let record = try #require(try await mended.run(id: "stuck"))
            #expect(record.status == .compensated)
            #expect(record.history.contains { $0.name == "operator" && $0.status == "retried" })
            #expect(try await admin.detail(id: "stuck")?.status == .compensated)
        }
    }

    /// An orchestrator in a service group of its own, stopped gracefully at the end.
    static func running<T: Sendable>(_ orchestrator: SagaOrchestrator<Trip>, _ body: @Sendable (ServiceGroup) async throws -> T) async throws -> T {
        let group = ServiceGroup(services: [orchestrator], logger: Logger(label: "group"))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let result = try await body(group)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    static func slow(_ delays: [String: Duration]) -> SagaDefinition<Trip> {
        let steps = ["reserve", "charge", "create"].map { name in
            SagaStep<Trip>(
                name, timeout: .seconds(30),
                action: { state, context in
                    if let delay = delays[context.sagaID] { try await Task.sleep(for: delay) }
                    state.done.append(name)
                })
        }
        return SagaDefinition(name: "trip", steps: steps)
    }

    @Test(arguments: TestDatabase.available)
    func aGracefulStopLetsRunningSagasFinishAndTakesNoNewOnes(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let orchestrator = SagaOrchestrator(
                definition: Self.slow(["slow": .milliseconds(150), "endless": .seconds(3600)]), database: database, logger: Logger(label: "saga"),
                drainTimeout: .seconds(3)
            )
            try await Self.running(orchestrator) { group in
                try await orchestrator.start(id: "slow", state: Trip())
                try await orchestrator.start(id: "endless", state: Trip())
                let slow = try orchestrator.submit(id: "slow")
                let endless = try orchestrator.submit(id: "endless")
                #expect(await !slow.wait(upTo: .milliseconds(50)))
                await group.triggerGracefulShutdown()
                try await eventually("the orchestrator to stop taking sagas", timeout: .seconds(5)) { !orchestrator.isAccepting }
                // No new sagas while stopping.
                #expect(throws: SagaOrchestrator<Trip>.ShuttingDown.self) { try orchestrator.submit(id: "late") }
                // The running one finishes within the drain time; the endless one stops at its end, still running.
                #expect(await slow.wait(upTo: .seconds(10)))
                #expect(await endless.wait(upTo: .seconds(10)))
            }
            #expect(try await orchestrator.record(id: "slow")?.status == .completed)
            #expect(try await orchestrator.record(id: "endless")?.status == .running)
        }
    }

    @Test(arguments: TestDatabase.available)
    func recoveryResumesOrphansSideBySide(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            // Two sagas left by a "crashed" orchestrator, whose lease has run out.
            let clock = ManualClock()
            let crashed = SagaOrchestrator(
                definition: Self.slow([:]), database: database, logger: Logger(label: "crashed"), lease: .seconds(30), clock: clock)
            try await crashed.start(id: "a-slow", state: Trip())
            try await crashed.start(id: "b-fast", state: Trip())
            clock.advance(by: .seconds(31))
            let recovery = SagaOrchestrator(
                definition: Self.slow(["a-slow": .seconds(3)]), database: database, logger: Logger(label: "recovery"),
                recoveryInterval: .milliseconds(20), drainTimeout: .milliseconds(100), clock: clock
            )
            try await Self.running(recovery) { _ in
                // The fast one is not held up behind the slow one, which recovery found first.
                try await eventually("the fast orphan to complete", timeout: .seconds(2.5)) {
                    try await recovery.record(id: "b-fast")?.status == .completed
                }
                #expect(try await recovery.record(id: "a-slow")?.status == .running)
            }
        }
    }
}
