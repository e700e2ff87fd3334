import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import SQLKit
import ServiceContextModule
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceResilience
import Tracing

/// Runs sagas of one definition durably on the service's database.
///
/// Every transition is committed before the next action: the saga row holds the state, the next step to run (or to
/// compensate) and a lease; `saga_steps` keeps the history. A saga runs under a lease of this orchestrator, renewed at
/// each step; when a process dies, its sagas' leases run out and whichever orchestrator runs next (the restarted
/// process, or another instance) picks them up where they stood and either completes or compensates them. A step that
/// may have run when the process died is run again — steps are idempotent by their key.
public final class SagaOrchestrator<State: Codable & Sendable>: Service, Sendable {
    public let definition: SagaDefinition<State>
    let database: Database
    let logger: Logger
    /// The time of leases, deadlines, backoffs and the recovery schedule (a step's own timeout is real time: it bounds
    /// the step's I/O).
    let clock: any WallClock
    /// How long a saga stays with this orchestrator without a sign of life (a step boundary).
    let lease: Duration
    /// How often unfinished sagas whose lease ran out are looked for.
    let recoveryInterval: Duration
    let owner = UUID().uuidString.lowercased()
    /// Sagas this orchestrator is running now: the recovery loop never starts a second run of one.
    private let running = NIOLockedValueBox<Set<String>>([])
    /// Runs handed to ``run()`` by ``submit(id:)`` and by recovery.
    private let requests = AsyncStream<(id: String, done: Gate)>.makeStream()
    /// When a graceful stop began (nil while accepting); past it by ``drainTimeout`` runs stop at their next boundary.
    private let draining = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
    /// Opens when runs must stop now (the drain time is over).
    private let stopRuns = Gate()
    /// Runs submitted and not ended yet (recovery submits while fewer than `recoveryConcurrency`).
    private let inFlight = NIOLockedValueBox(0)
    /// How long a graceful stop lets running sagas go on (most finish) before they stop at their next step boundary.
    let drainTimeout: Duration
    /// Orphaned sagas resumed at the same time by recovery.
    let recoveryConcurrency: Int
    /// Called when a run of a saga in this process ends (finished, or stopped), e.g. to drop what it held in memory.
    let afterRun: (@Sendable (_ sagaID: String) -> Void)?
    /// A test's hook: called at each step boundary, before the next transition; throwing there stops the saga as a
    /// crash would (nothing more is written).
    let boundary: (@Sendable (_ sagaID: String, _ event: String) async throws -> Void)?

    public convenience init(
        definition: SagaDefinition<State>,
        database: Database,
        logger: Logger,
        lease: Duration? = nil,
        recoveryInterval: Duration = .seconds(1),
        drainTimeout: Duration = .seconds(4),
        recoveryConcurrency: Int = 16,
        afterRun: (@Sendable (_ sagaID: String) -> Void)? = nil,
        clock: any WallClock = SystemClock()
    ) {
        self.init(
            definition: definition, database: database, logger: logger, lease: lease, recoveryInterval: recoveryInterval,
            drainTimeout: drainTimeout, recoveryConcurrency: recoveryConcurrency, afterRun: afterRun, clock: clock, boundary: nil
        )
    }

    /// With a test's hook at every step boundary (`@_spi(Testing) import ServiceSaga`): `boundary` may throw
    /// ``SimulatedCrash`` to stop the saga there as a crash would.
    @_spi(Testing)
    public init(
        definition: SagaDefinition<State>,
        database: Database,
        logger: Logger,
        lease: Duration? = nil,
        recoveryInterval: Duration = .seconds(1),
        drainTimeout: Duration = .seconds(4),
        recoveryConcurrency: Int = 16,
        afterRun: (@Sendable (_ sagaID: String) -> Void)? = nil,
        clock: any WallClock = SystemClock(),
        boundary: (@Sendable (_ sagaID: String, _ event: String) async throws -> Void)?
    ) {
        self.clock = clock
        self.afterRun = afterRun
        self.drainTimeout = drainTimeout
        self.recoveryConcurrency = max(1, recoveryConcurrency)
        self.definition = definition
        self.database = database
        self.logger = logger
        // Longer than any one step may take, so a live orchestrator never loses a saga mid-step.
        let longest = definition.steps.map(\.timeout).max() ?? .seconds(10)
        self.lease = lease ?? max(longest * 3, .seconds(30))
        self.recoveryInterval = recoveryInterval
        self.boundary = boundary
    }

    /// When a lease taken now runs out (milliseconds since 1970).
    var leaseUntil: Int64 { clock.millis(after: lease) }

    // MARK: Starting and reading

    /// Stores a new saga (leased to this orchestrator); false when one with this id exists already, or when `also`
    /// — run in the same transaction, e.g. to record an idempotency key — answers false (then nothing is stored).
    @discardableResult
    public func start(id: String, state: State, also: (@Sendable (any SQLDatabase) async throws -> Bool)? = nil) async throws -> Bool {
        let now = Timestamp.now(on: self.clock)
        let text = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        let traceparent = TraceContext.traceparent()
        do {
            try await database.transaction { sql in
                if let also, try await !also(sql) { throw NotStarted() }
                try await sql.raw(
                    """
                    INSERT INTO sagas (id, name, status, state, next_step, owner, lease_until, created_at, updated_at, traceparent)
                    VALUES (\(bind: id), \(bind: self.definition.name), 'running', \(bind: text), 0, \(bind: self.owner),
                            \(bind: self.leaseUntil), \(bind: now), \(bind: now), \(bind: traceparent))
                    """
                ).run()
            }
            return true
        } catch  where Database.isUniqueViolation(error) || error is NotStarted {
            return false
        }
    }

    struct NotStarted: Error {}

    /// Runs saga `id` until it is finished, or until it is not this orchestrator's to run (another holds its lease);
    /// answers its record at that point.
    @discardableResult
    public func run(id: String) async throws -> SagaRecord<State>? {
        // A saga outlives the request that started it: its calls are not bound by that caller's deadline.
        try await RequestDeadline.$current.withValue(nil) { try await runUnbound(id: id) }
    }

    func runUnbound(id: String) async throws -> SagaRecord<State>? {
        // `saga_run_duration_seconds{saga}`: one run in this process, from claim to its end (a resumed saga's time before
        // the crash is not in it).
        let started = ContinuousClock.now
        defer {
            Metrics.Timer(label: "saga_run_duration_seconds", dimensions: [("saga", definition.name)]).recordNanoseconds(
                started.duration(to: .now).wholeNanoseconds)
        }
        guard running.withLockedValue({ $0.insert(id).inserted }) else { return try await record(id: id) }
        defer {
            _ = running.withLockedValue { $0.remove(id) }
            afterRun?(id)
        }
        guard try await claim(id: id) else { return try await record(id: id) }
        // A run with no trace of its own (resumed by the recovery loop after a crash) continues the one it started in.
        var context = ServiceContext.current ?? .topLevel
        if TraceContext.traceparent() == nil {
            let stored = try await database.withConnection { sql in
                try await sql.raw("SELECT traceparent FROM sagas WHERE id = \(bind: id)").first()?.decode(column: "traceparent", as: String?.self)
            }
            context = TraceContext.context(traceparent: stored ?? nil)
        }
        do {
            try await ServiceContext.$current.withValue(context) {
                // A graceful stop past its drain time stops a saga between two transitions.
                while !stopRuns.isOpen, try await advance(id: id) {}
            }
        } catch let crash as SimulatedCrash {
            throw crash
        } catch {
            // The database failed under us: the lease runs out and the saga is resumed later.
            logger.warning("Saga paused by an error; it resumes when its lease runs out", metadata: ["sagaId": "\(id)", "error": "\(error)"])
        }
        return try await record(id: id)
    }

    /// The saga's record, with its history.
    public func record(id: String) async throws -> SagaRecord<State>? {
        try await database.withConnection { sql in
            guard let row = try await sql.raw("SELECT * FROM sagas WHERE id = \(bind: id)").first() else { return nil }
            let history = try await sql.raw("SELECT step, status, error, at FROM saga_steps WHERE saga_id = \(bind: id) ORDER BY seq").all().map {
                SagaRecord<State>.Entry(
                    name: try $0.decode(column: "step", as: String.self), status: try $0.decode(column: "status", as: String.self),
                    at: try $0.decode(column: "at", as: String.self), error: try $0.decode(column: "error", as: String?.self)
                )
            }
            return SagaRecord(
                id: id,
                status: try row.decode(column: "status", of: "sagas", as: SagaStatus.self),
                state: try JSONDecoder().decode(State.self, from: Data(try row.decode(column: "state", as: String.self).utf8)),
                error: try row.decode(column: "error", as: String?.self),
                errorStatus: try row.decode(column: "error_status", as: Int?.self),
                history: history
            )
        }
    }

    // MARK: Runs and recovery

    /// A saga run handed to the orchestrator; ``wait(upTo:)`` tells whether it ended in time.
    public struct Run: Sendable {
        let done: Gate

        /// Waits at most `limit` for the run to end (the saga finished, or stopped for a restart); true when it did.
        public func wait(upTo limit: Duration) async -> Bool {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    await done.wait()
                    return done.isOpen
                }
                group.addTask {
                    try? await Task.sleep(for: limit)
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
        }
    }

    /// The orchestrator is stopping and takes no new sagas (answer the client "try again shortly").
    public struct ShuttingDown: Error, CustomStringConvertible {
        public var description: String { "the saga orchestrator is shutting down" }
    }

    /// Whether new sagas are taken (false once a graceful stop began).
    public var isAccepting: Bool { draining.withLockedValue { $0 == nil } }

    /// Hands saga `id` (stored with ``start(id:state:also:)``) to the orchestrator's own run loop, which owns it from now
    /// on: a client that hangs up does not stop it, and a graceful stop lets it finish or reach a step boundary.
    public func submit(id: String) throws -> Run {
        guard isAccepting else { throw ShuttingDown() }
        let done = Gate()
        inFlight.withLockedValue { $0 += 1 }
        guard case .enqueued = requests.continuation.yield((id, done)) else {
            inFlight.withLockedValue { $0 -= 1 }
            throw ShuttingDown()
        }
        return Run(done: done)
    }

    /// Runs the sagas handed over by ``submit(id:)`` and resumes, every `recoveryInterval`, unfinished sagas whose
    /// lease ran out (up to `recoveryConcurrency` at a time, side by side, so one slow saga holds up no other). On
    /// graceful shutdown it takes no new sagas, lets running ones go on for `drainTimeout`, then stops them at their
    /// next step boundary (their leases run out, and the next start resumes them).
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.database.prepared.wait() }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.recover() }
                for await request in self.requests.stream {
                    group.addTask {
                        defer {
                            self.inFlight.withLockedValue { $0 -= 1 }
                            request.done.open()
                        }
                        await self.runUntilStopped(id: request.id)
                    }
                }
            }
        } onGracefulShutdown: {
            self.beginDraining()
        }
    }

    func beginDraining() {
        let first = draining.withLockedValue { draining in
            defer { if draining == nil { draining = .now } }
            return draining == nil
        }
        guard first else { return }
        requests.continuation.finish()
        let (drainTimeout, stopRuns, logger) = (self.drainTimeout, self.stopRuns, self.logger)
        let running = self.running.withLockedValue { $0.count }
        logger.info("Saga orchestrator draining", metadata: ["running": "\(running)", "drainMs": "\(drainTimeout.wholeMilliseconds)"])
        Task {
            try? await Task.sleep(for: drainTimeout)
            stopRuns.open()
        }
    }

    /// Runs saga `id` until it ends or the drain time of a graceful stop is over.
    func runUntilStopped(id: String) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    _ = try await self.run(id: id)
                } catch {
                    self.logger.warning("Saga run stopped", metadata: ["sagaId": "\(id)", "error": "\(error)"])
                }
            }
            group.addTask { await self.stopRuns.wait() }
            _ = await group.next()
            group.cancelAll()
        }
    }

    func recover() async {
        while isAccepting, !Task.isCancelled {
            do {
                for id in try await orphans() {
                    guard isAccepting, inFlight.withLockedValue({ $0 < recoveryConcurrency }), !running.withLockedValue({ $0.contains(id) }) else {
                        continue
                    }
                    logger.info("Resuming saga", metadata: ["sagaId": "\(id)", "saga": "\(definition.name)"])
                    _ = try? submit(id: id)
                }
            } catch {
                logger.warning("Saga recovery failed; trying again", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await self.clock.sleep(for: self.recoveryInterval) }
        }
    }

    /// Removes saga `id` if it has not taken a step yet (stored, then the orchestrator could not take it), with what
    /// `also` removes in the same transaction (its idempotency record, say).
    public func discard(id: String, also: (@Sendable (any SQLDatabase) async throws -> Void)? = nil) async throws {
        try await database.transaction { sql in
            let removed = try await sql.raw(
                "DELETE FROM sagas WHERE id = \(bind: id) AND status = 'running' AND next_step = 0 RETURNING id"
            ).all()
            guard !removed.isEmpty else { return }
            try await sql.raw("DELETE FROM saga_steps WHERE saga_id = \(bind: id)").run()
            try await also?(sql)
        }
    }

    /// Puts a `failed` saga back to compensating (see ``SagaAdmin/retry(id:)``); false when it is not `failed`.
    public func retry(id: String) async throws -> Bool {
        try await SagaAdmin(database: database, name: definition.name, logger: logger, clock: clock).retry(id: id)
    }

    /// Unfinished sagas of this definition whose lease ran out.
    public func orphans() async throws -> [String] {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                SELECT id FROM sagas WHERE name = \(bind: self.definition.name) AND status IN ('running', 'compensating')
                  AND lease_until < \(bind: self.clock.millis) ORDER BY created_at LIMIT 50
                """
            ).all().map { try $0.decode(column: "id", as: String.self) }
        }
    }

    /// Takes the lease of an unfinished saga that is free (or already ours); false otherwise.
    func claim(id: String) async throws -> Bool {
        try await database.withConnection { sql in
            try await !sql.raw(
                """
                UPDATE sagas SET owner = \(bind: self.owner), lease_until = \(bind: self.leaseUntil)
                WHERE id = \(bind: id) AND status IN ('running', 'compensating')
                  AND (owner = \(bind: self.owner) OR lease_until < \(bind: self.clock.millis))
                RETURNING id
                """
            ).all().isEmpty
        }
    }

    // MARK: Execution

    struct Position {
        var status: SagaStatus
        var state: State
        var nextStep: Int
        var compensateFrom: Int?
        /// When the saga started (its deadlines count from here).
        var startedAt: Date
    }

    /// Thrown by the test hook to stop a saga the way a crash would.
    @_spi(Testing)
    public struct SimulatedCrash: Error {
        public init() {}
    }

    /// Does one transition of saga `id`; false when it is finished (or no longer ours).
    func advance(id: String) async throws -> Bool {
        guard let position = try await load(id: id) else { return false }
        switch position.status {
        case .completed, .compensated, .failed:
            return false
        case .running:
            guard position.nextStep < definition.steps.count else {
                try await boundary?(id, "complete")
                try await finish(id: id, status: .completed)
                logger.info("Saga completed", metadata: ["sagaId": "\(id)", "saga": "\(definition.name)"])
                Counter(label: "sagas_finished_total", dimensions: [("saga", definition.name), ("status", "completed")]).increment()
                return false
            }
            try await execute(step: position.nextStep, of: id, state: position.state, deadline: position.startedAt + definition.deadline.inSeconds)
            return true
        case .compensating:
            let index = position.compensateFrom ?? -1
            guard index >= 0 else {
                try await boundary?(id, "compensated")
                try await finish(id: id, status: .compensated)
                logger.info("Saga compensated", metadata: ["sagaId": "\(id)", "saga": "\(definition.name)"])
                Counter(label: "sagas_finished_total", dimensions: [("saga", definition.name), ("status", "compensated")]).increment()
                return false
            }
            return try await compensate(
                step: index, of: id, state: position.state, limit: position.startedAt + definition.compensationLimit.inSeconds)
        }
    }

    /// Runs step `index`, retrying transient failures with backoff until `deadline` (or the step's attempts) is reached.
    func execute(step index: Int, of id: String, state: State, deadline: Date) async throws {
        let step = definition.steps[index]
        try await boundary?(id, "before \(step.name)")
        try await transition(id: id, history: (step.name, "started", nil)) { _ in }
        var attempt = 0
        var changed: State?
        while changed == nil {
            attempt += 1
            let context = SagaStepContext(sagaID: id, step: step.name, attempt: attempt)
            do {
                changed = try await withSpan("saga \(definition.name) \(step.name)") { span in
                    span.attributes["saga.id"] = id
                    span.attributes["saga.attempt"] = attempt
                    return try await withHeartbeat(id: id) {
                        try await Self.withTimeout(step.timeout) {
                            var next = state
                            try await step.action(&next, context)
                            return next
                        }
                    }
                }
            } catch let failure as SagaStepFailure {
                try await fail(id: id, at: index, step: step.name, message: failure.message, status: failure.status)
                return
            } catch let crash as SimulatedCrash {
                throw crash
            } catch let lost as LeaseLost {
                throw lost
            } catch {
                // Stopped (a graceful stop past its drain time): not the step's failure; the saga resumes after the restart.
                if Task.isCancelled { throw CancellationError() }
                let delay = definition.backoff(afterAttempt: attempt)
                guard attempt < step.maxAttempts, clock.date + delay.inSeconds < deadline else {
                    // The saga's history is shown to its client: the error's own text (a driver's, a host name) stays
                    // in the log.
                    logger.error("Saga step failed for good", metadata: ["sagaId": "\(id)", "step": "\(step.name)", "error": "\(error)"])
                    try await fail(id: id, at: index, step: step.name, message: "The step failed (temporarily unavailable)", status: 503)
                    return
                }
                logger.warning(
                    "Saga step failed; retrying", metadata: ["sagaId": "\(id)", "step": "\(step.name)", "attempt": "\(attempt)", "error": "\(error)"])
                try await clock.sleep(for: delay)
                try await renew(id: id)
            }
        }
        // Recording the success is outside the step's retries: should the database fail here, the saga pauses (and is
        // resumed when its lease runs out, re-running the idempotent step) instead of counting a done step as failed.
        guard let changed else { return }
        try await boundary?(id, "after \(step.name)")
        try await transition(id: id, history: (step.name, "completed", nil)) { sql in
            try await sql.raw(
                "UPDATE sagas SET state = \(bind: try Self.encode(changed)), next_step = \(bind: index + 1) WHERE id = \(bind: id)"
            ).run()
        }
    }

    /// The step at `index` failed: compensate from it (its effect may be partial or unknown) back to the first.
    func fail(id: String, at index: Int, step: String, message: String, status: Int) async throws {
        logger.info("Saga step failed; compensating", metadata: ["sagaId": "\(id)", "step": "\(step)", "error": "\(message)"])
        try await boundary?(id, "failed \(step)")
        try await transition(id: id, history: (step, "failed", message)) { sql in
            try await sql.raw(
                """
                UPDATE sagas SET status = 'compensating', compensate_from = \(bind: index), error = \(bind: String(message.prefix(2000))),
                    error_status = \(bind: status)
                WHERE id = \(bind: id)
                """
            ).run()
        }
    }

    /// Compensates the step at `index`, retrying transient failures until `limit`; false (and `failed`) when it keeps
    /// failing past it.
    func compensate(step index: Int, of id: String, state: State, limit: Date) async throws -> Bool {
        let step = definition.steps[index]
        try await boundary?(id, "before compensating \(step.name)")
        var attempt = 0
        while let compensation = step.compensation {
            attempt += 1
            let context = SagaStepContext(sagaID: id, step: step.name, attempt: attempt)
            do {
                try await withSpan("saga \(definition.name) compensate \(step.name)") { span in
                    span.attributes["saga.id"] = id
                    try await withHeartbeat(id: id) { try await Self.withTimeout(step.timeout) { try await compensation(state, context) } }
                }
                break
            } catch let crash as SimulatedCrash {
                throw crash
            } catch let lost as LeaseLost {
                throw lost
            } catch {
                if Task.isCancelled { throw CancellationError() }
                let delay = definition.backoff(afterAttempt: attempt)
                guard attempt < definition.compensationAttempts, clock.date + delay.inSeconds < limit else {
                    logger.error(
                        "Saga compensation keeps failing; an operator must finish it",
                        metadata: ["sagaId": "\(id)", "step": "\(step.name)", "error": "\(error)"])
                    Counter(label: "sagas_finished_total", dimensions: [("saga", definition.name), ("status", "failed")]).increment()
                    try await transition(id: id, history: (step.name, "compensation failed", "The compensation failed (temporarily unavailable)")) {
                        sql in
                        try await sql.raw("UPDATE sagas SET status = 'failed' WHERE id = \(bind: id)").run()
                    }
                    return false
                }
                logger.warning(
                    "Saga compensation failed; retrying",
                    metadata: ["sagaId": "\(id)", "step": "\(step.name)", "attempt": "\(attempt)", "error": "\(error)"])
                try await clock.sleep(for: delay)
                try await renew(id: id)
            }
        }
        try await boundary?(id, "after compensating \(step.name)")
        try await transition(id: id, history: (step.name, "compensated", nil)) { sql in
            try await sql.raw("UPDATE sagas SET compensate_from = \(bind: index - 1) WHERE id = \(bind: id)").run()
        }
        return true
    }

    /// Commits one transition: `change`, a history entry, and a renewed lease — only while the saga is still ours.
    func transition(
        id: String, history: (step: String, status: String, error: String?), _ change: @escaping @Sendable (any SQLDatabase) async throws -> Void
    )
        async throws
    {
        try await transitionWithoutHistory(id: id) { sql in
            try await change(sql)
            let seq =
                try await sql.raw("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM saga_steps WHERE saga_id = \(bind: id)").first()?
                .decode(column: "next", as: Int.self) ?? 1
            try await sql.raw(
                """
                INSERT INTO saga_steps (saga_id, seq, step, status, error, at)
                VALUES (\(bind: id), \(bind: seq), \(bind: history.step), \(bind: history.status), \(bind: history.error.map { String($0.prefix(2000)) }),
                        \(bind: Timestamp.now(on: self.clock)))
                """
            ).run()
        }
    }

    struct LeaseLost: Error {}

    /// Runs `body` while renewing the saga's lease every third of it, so a step longer than the lease is not taken for
    /// a dead one; stops `body` (and throws ``LeaseLost``) if another orchestrator has taken the saga meanwhile.
    func withHeartbeat<T: Sendable>(id: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while true {
                    try await self.clock.sleep(for: self.lease / 3)
                    try await self.renew(id: id)
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw LeaseLost() }
            return value
        }
    }

    func renew(id: String) async throws {
        try await transitionWithoutHistory(id: id) { _ in }
    }

    func finish(id: String, status: SagaStatus) async throws {
        try await transitionWithoutHistory(id: id) { sql in
            try await sql.raw("UPDATE sagas SET status = \(bind: status.rawValue), owner = NULL WHERE id = \(bind: id)").run()
        }
    }

    /// Commits `change` with a renewed lease, only while the saga is still ours (``LeaseLost`` otherwise).
    func transitionWithoutHistory(id: String, _ change: @escaping @Sendable (any SQLDatabase) async throws -> Void) async throws {
        try await database.transaction { sql in
            let ours = try await sql.raw(
                """
                UPDATE sagas SET lease_until = \(bind: self.leaseUntil), updated_at = \(bind: Timestamp.now(on: self.clock))
                WHERE id = \(bind: id) AND owner = \(bind: self.owner) RETURNING id
                """
            ).all()
            guard !ours.isEmpty else { throw LeaseLost() }
            try await change(sql)
        }
    }

    func load(id: String) async throws -> Position? {
        try await database.withConnection { sql in
            guard let row = try await sql.raw("SELECT * FROM sagas WHERE id = \(bind: id) AND owner = \(bind: self.owner)").first() else {
                return nil
            }
            return Position(
                status: try row.decode(column: "status", of: "sagas", as: SagaStatus.self),
                state: try JSONDecoder().decode(State.self, from: Data(try row.decode(column: "state", as: String.self).utf8)),
                nextStep: try row.decode(column: "next_step", as: Int.self),
                compensateFrom: try row.decode(column: "compensate_from", as: Int?.self),
                startedAt: try Self.date(try row.decode(column: "created_at", as: String.self))
            )
        }
    }

    /// A stored `Timestamp`; one that cannot be read is an ``UnreadableValue``.
    static func date(_ text: String) throws -> Date {
        guard let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) else {
            throw UnreadableValue(table: "sagas", column: "created_at", value: text)
        }
        return date
    }

    static func encode(_ state: State) throws -> String {
        String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
    }

    /// Runs `body`, cancelling it and throwing ``TimedOut`` after `timeout`.
    static func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await ServiceResilience.withTimeout(timeout, body)
    }
}
