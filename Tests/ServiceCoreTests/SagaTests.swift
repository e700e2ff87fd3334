import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceDatabase
import ServiceResilience
@_spi(Testing) import ServiceSaga
import ServiceTesting
import Testing
import Tracing

@Suite struct SagaTests {
    struct Trip: Codable, Sendable, Equatable {
        var done: [String] = []
    }

    /// A downstream system that honours idempotency keys, and records what it did.
    final class Downstream: Sendable {
        struct State {
            var applied: Set<String> = []
            var undone: Set<String> = []
            var calls: [String] = []
        }
        let state = NIOLockedValueBox(State())

        func apply(_ context: SagaStepContext) {
            state.withLockedValue {
                $0.calls.append("do \(context.step)")
                $0.applied.insert(context.idempotencyKey)
            }
        }

        func undo(_ context: SagaStepContext) {
            state.withLockedValue {
                $0.calls.append("undo \(context.step)")
                // Undoing what was never done is a no-op, as a refund of no charge is.
                if $0.applied.contains(context.idempotencyKey) { $0.undone.insert(context.idempotencyKey) }
            }
        }

        var calls: [String] { state.withLockedValue { $0.calls } }
        /// Steps whose effect stands: applied and not undone.
        var standing: Set<String> {
            state.withLockedValue { state in Set(state.applied.subtracting(state.undone).map { String($0.split(separator: ":").last!) }) }
        }
    }

    enum Failure: Sendable {
        case none
        case permanent(String)
        case transient(String, times: Int)
        case compensationFails(String)
        case hangs(String)
    }

    static func definition(_ downstream: Downstream, failure: Failure = .none) -> SagaDefinition<Trip> {
        let transientLeft = NIOLockedValueBox(0)
        if case .transient(_, let times) = failure { transientLeft.withLockedValue { $0 = times } }
        let steps = ["reserve", "charge", "create"].map { name in
            SagaStep<Trip>(
                name, timeout: .milliseconds(300), maxAttempts: 3,
                action: { state, context in
                    switch failure {
                    case .permanent(name):
                        throw SagaStepFailure(status: 402, message: "\(name) refused")
                    case .transient(name, _)
                    where transientLeft.withLockedValue({ left in
                        defer { left -= 1 }; return left > 0
                    }):
                        throw CancellationError()
                    case .hangs(name):
                        try await Task.sleep(for: .seconds(60))
                    default:
                        break
                    }
                    downstream.apply(context)
                    state.done.append(name)
                },
                compensation: { _, context in
                    if case .compensationFails(name) = failure { throw CancellationError() }
                    downstream.undo(context)
                }
            )
        }
        return SagaDefinition(name: "trip", steps: steps, compensationAttempts: 3, baseBackoff: .milliseconds(1), maxBackoff: .milliseconds(5))
    }

    static func orchestrator(
        _ definition: SagaDefinition<Trip>, _ database: Database, lease: Duration = .seconds(30), clock: any WallClock = SystemClock(),
        boundary: (@Sendable (String, String) async throws -> Void)? = nil
    ) -> SagaOrchestrator<Trip> {
        SagaOrchestrator(definition: definition, database: database, logger: Logger(label: "saga"), lease: lease, clock: clock, boundary: boundary)
    }

    @Test(arguments: TestDatabase.available)
    func aSagaRunsItsStepsInOrderAndKeepsItsHistory(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let downstream = Downstream()
            let saga = Self.orchestrator(Self.definition(downstream), database)
            #expect(try await saga.start(id: "s1", state: Trip()))
            #expect(try await !saga.start(id: "s1", state: Trip()))
            // What runs in the start's transaction can veto it: nothing is stored then.
            #expect(try await !saga.start(id: "vetoed", state: Trip()) { _ in false })
            #expect(try await saga.record(id: "vetoed") == nil)
            let record = try #require(try await saga.run(id: "s1"))
            #expect(record.status == .completed)
            #expect(record.state.done == ["reserve", "charge", "create"])
            #expect(
                record.history.map { "\($0.name) \($0.status)" } == [
                    "reserve started", "reserve completed", "charge started", "charge completed", "create started", "create completed",
                ])
            #expect(downstream.calls == ["do reserve", "do charge", "do create"])
            // Running a finished saga again does nothing.
            #expect(try await saga.run(id: "s1")?.status == .completed)
            #expect(downstream.calls.count == 3)
        }
    }

    @Test(arguments: TestDatabase.available)
    func eachFailingStepCompensatesExactlyWhatRanInReverse(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let expected: [String: [String]] = [
                "reserve": ["undo reserve"],
                "charge": ["do reserve", "undo charge", "undo reserve"],
                "create": ["do reserve", "do charge", "undo create", "undo charge", "undo reserve"],
            ]
            for (failing, calls) in expected {
                let downstream = Downstream()
                let saga = Self.orchestrator(Self.definition(downstream, failure: .permanent(failing)), database)
                try await saga.start(id: "fail-\(failing)", state: Trip())
                let record = try #require(try await saga.run(id: "fail-\(failing)"))
                #expect(record.status == .compensated, "\(failing)")
                #expect(record.errorStatus == 402)
                #expect(record.error == "\(failing) refused")
                #expect(downstream.calls == calls, "\(failing)")
                #expect(downstream.standing.isEmpty, "\(failing)")
                #expect(record.history.last?.status == "compensated")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func transientFailuresAreRetriedAndTimeoutsCount(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let downstream = Downstream()
            let flaky = Self.orchestrator(Self.definition(downstream, failure: .transient("charge", times: 2)), database)
            try await flaky.start(id: "flaky", state: Trip())
            #expect(try await flaky.run(id: "flaky")?.status == .completed)
            #expect(downstream.standing == ["reserve", "charge", "create"])

            // A step that hangs times out on every attempt, then the saga compensates (503: the step was unavailable).
            let stuck = Downstream()
            let hanging = Self.orchestrator(Self.definition(stuck, failure: .hangs("create")), database)
            try await hanging.start(id: "hanging", state: Trip())
            let record = try #require(try await hanging.run(id: "hanging"))
            #expect(record.status == .compensated)
            #expect(record.errorStatus == 503)
            #expect(record.error == "The step failed (temporarily unavailable)", "an internal error's text is not shown to the client")
            #expect(stuck.standing.isEmpty)
        }
    }

    @Test(arguments: TestDatabase.available)
    func aCompensationThatKeepsFailingLeavesTheSagaForAnOperator(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let downstream = Downstream()
            let definition = Self.definition(downstream, failure: .compensationFails("reserve"))
            var failing = definition
            failing.steps[2].action = { _, _ in throw SagaStepFailure(status: 409, message: "no") }
            let saga = Self.orchestrator(failing, database)
            try await saga.start(id: "stuck", state: Trip())
            let record = try #require(try await saga.run(id: "stuck"))
            #expect(record.status == .failed)
            #expect(record.history.last?.status == "compensation failed")
            #expect(record.history.last?.name == "reserve")
            // It is not picked up again as an orphan: failed is final until an operator acts.
            #expect(try await saga.orphans().isEmpty)
        }
    }

    /// Crashes the orchestrator at every boundary in turn (before and after each step and compensation); a second
    /// orchestrator (the restarted process) resumes the saga once its lease runs out. Every run ends completed or fully
    /// compensated, and no downstream effect happened twice.
    @Test(arguments: TestDatabase.available)
    func aCrashAtAnyBoundaryEndsCompletedOrFullyCompensated(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let boundaries = ["before reserve", "after reserve", "before charge", "after charge", "before create", "after create", "complete"]
            let failingBoundaries = [
                "before reserve", "after reserve", "before charge", "failed charge", "before compensating charge", "after compensating charge",
                "before compensating reserve", "after compensating reserve", "compensated",
            ]
            for (failure, points) in [(Failure.none, boundaries), (Failure.permanent("charge"), failingBoundaries)] {
                for point in points {
                    let downstream = Downstream()
                    let definition = Self.definition(downstream, failure: failure)
                    let id = "crash-\(point.replacingOccurrences(of: " ", with: "-"))-\(UUID().uuidString.prefix(6))"
                    let clock = ManualClock()
                    let crashing = Self.orchestrator(definition, database, clock: clock) { _, event in
                        if event == point { throw SagaOrchestrator<Trip>.SimulatedCrash() }
                    }
                    try await crashing.start(id: id, state: Trip())
                    await #expect(throws: SagaOrchestrator<Trip>.SimulatedCrash.self) { try await crashing.run(id: id) }

                    // The dead process's lease (30 s) holds to its last millisecond, then the saga is free to resume.
                    let restarted = Self.orchestrator(definition, database, clock: clock)
                    clock.advance(by: .seconds(30))
                    #expect(try await !restarted.orphans().contains(id), "\(point)")
                    clock.advance(by: .milliseconds(1))
                    #expect(try await restarted.orphans().contains(id), "\(point)")
                    let record = try #require(try await restarted.run(id: id))
                    switch failure {
                    case .none:
                        #expect(record.status == .completed, "\(point)")
                        #expect(downstream.standing == ["reserve", "charge", "create"], "\(point)")
                    default:
                        #expect(record.status == .compensated, "\(point)")
                        #expect(downstream.standing.isEmpty, "\(point)")
                    }
                    // Each effect at most once: the downstream saw each key applied once at most (a re-run is a no-op).
                    #expect(downstream.calls.filter { $0.hasPrefix("do") }.count <= 4, "\(point): \(downstream.calls)")
                }
            }
        }
    }

    @Test func aSagaResumedAfterACrashContinuesTheTraceItStartedIn() async throws {
        let tracer = W3CInMemoryTracer.shared
        try await TestDatabase.sqlite.withDatabase(migrations: SagaMigrations.all) { database in
            let definition = Self.definition(Downstream())
            let id = "traced-\(UUID().uuidString.prefix(6))"
            let clock = ManualClock()
            let crashing = Self.orchestrator(definition, database, clock: clock) { _, event in
                if event == "after reserve" { throw SagaOrchestrator<Trip>.SimulatedCrash() }
            }
            // Started inside a request's span, and cut off after its first step.
            let traceID = try await withSpan("POST /trips", ofKind: .server) { _ -> String in
                try await crashing.start(id: id, state: Trip())
                await #expect(throws: SagaOrchestrator<Trip>.SimulatedCrash.self) { try await crashing.run(id: id) }
                return TraceContext.ids()?.traceID ?? ""
            }
            #expect(traceID.count == 32)
            let restarted = Self.orchestrator(definition, database, clock: clock)
            clock.advance(by: .seconds(31))
            #expect(try await restarted.orphans() == [id])
            // Resumed with no trace of its own (as the recovery loop does): its steps join the original trace.
            let record = try await Task.detached { try await restarted.run(id: id) }.value
            #expect(record?.status == .completed)
            let resumed = tracer.finishedSpans.filter {
                ["saga trip charge", "saga trip create"].contains($0.operationName) && $0.traceID == traceID
            }
            #expect(Set(resumed.map(\.operationName)) == ["saga trip charge", "saga trip create"])
        }
    }
}
