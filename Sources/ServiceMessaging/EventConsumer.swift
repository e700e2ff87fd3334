import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceResilience
import Tracing

/// What a consumer runs for each event type: a handler that gets the event and the service's transaction, or an
/// effect that acts outside the database (see ``onEffect(_:as:_:)``).
public struct EventHandlers: Sendable {
    public typealias Handler = @Sendable (EventEnvelope, any SQLDatabase) async throws -> Void
    public typealias Effect = @Sendable (EventEnvelope) async throws -> Void
    public typealias Committed = @Sendable (EventEnvelope) async -> Void
    var handlers: [String: Handler] = [:]
    var effects: [String: Effect] = [:]
    var committed: [String: Committed] = [:]

    public init() {}

    /// Handles events of `type`.
    public mutating func on(_ type: String, _ handler: @escaping Handler) {
        handlers[type] = handler
    }

    /// Handles events of `type` whose data decodes as `Payload` (data that does not is dead-lettered as malformed).
    public mutating func on<Payload: Decodable>(
        _ type: String, as payload: Payload.Type, _ handler: @escaping @Sendable (Payload, EventEnvelope, any SQLDatabase) async throws -> Void
    ) {
        handlers[type] = { event, sql in try await handler(try event.payload(as: Payload.self), event, sql) }
    }

    /// Performs an external side effect (a mail, a call to a provider) for each event of `type` whose data decodes as
    /// `Payload`, outside any transaction, after the transaction that asked for it committed: the event is the recorded
    /// intent. Each delivery is performed on its own (a batch that fails is never repeated as a whole), at most once
    /// per event id while its outcome is recorded (the inbox, written once the effect succeeded), and retried with
    /// backoff when the effect throws — except for a ``PermanentFailure``, which dead-letters it at once. Only a crash
    /// between the effect and the inbox write repeats it: pass the event id on as the effect's idempotency key.
    public mutating func onEffect<Payload: Decodable>(
        _ type: String, as payload: Payload.Type, _ effect: @escaping @Sendable (Payload, EventEnvelope) async throws -> Void
    ) {
        effects[type] = { event in try await effect(try event.payload(as: Payload.self), event) }
    }

    /// Runs `action` once the transaction in which the handler of an event of `type` ran has committed (only for an
    /// event handled now, not for a redelivery the inbox skipped): for what must not see uncommitted state, such as
    /// invalidating caches of what the handler changed. Not for side effects (see ``onEffect(_:as:_:)``): it is not
    /// retried, and a crash just after the commit skips it.
    public mutating func afterCommit<Payload: Decodable>(
        _ type: String, as payload: Payload.Type, _ action: @escaping @Sendable (Payload, EventEnvelope) async -> Void
    ) {
        precondition(committed[type] == nil, "an after-commit action for \(type) exists already")
        committed[type] = { event in
            if let payload = try? event.payload(as: Payload.self) { await action(payload, event) }
        }
    }

    /// The event types handled.
    public var types: [String] { Set(handlers.keys).union(effects.keys).sorted() }
}

/// Settings of a consumer.
public struct ConsumerConfiguration: Sendable {
    /// Deliveries leased at a time (the prefetch limit).
    public var prefetch: Int
    /// How long a leased delivery stays invisible to other consumers before it is delivered again.
    public var visibilityTimeout: Duration
    /// Attempts before a delivery is dead-lettered.
    public var maxAttempts: Int
    /// First retry delay; it doubles with each attempt (with jitter) up to `maxBackoff`.
    public var baseBackoff: Duration
    public var maxBackoff: Duration
    /// How long to wait when nothing is due, unless woken earlier.
    public var pollInterval: Duration
    /// Under load, the least time between two leases (see ``Linger``): bigger batches, fewer round trips per event.
    public var linger: Duration

    public init(
        prefetch: Int = 16,
        visibilityTimeout: Duration = .seconds(30),
        maxAttempts: Int = 5,
        baseBackoff: Duration = .milliseconds(200),
        maxBackoff: Duration = .seconds(30),
        pollInterval: Duration = .milliseconds(100),
        linger: Duration = .milliseconds(5)
    ) {
        self.prefetch = prefetch
        self.visibilityTimeout = visibilityTimeout
        self.maxAttempts = maxAttempts
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.pollInterval = pollInterval
        self.linger = linger
    }

    /// The delay before attempt `attempt + 1`: exponential with full jitter in its upper half.
    public func backoff(afterAttempt attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let exponential = baseBackoff * (1 << min(max(attempt - 1, 0), 20))
        let capped = min(exponential, maxBackoff)
        return capped / 2 + (capped / 2) * random
    }
}

/// A consumer group member: leases deliveries, runs each handler in a transaction of the service's database that also
/// records the event id (the inbox), acknowledges after commit, retries failures with backoff and dead-letters what
/// keeps failing, is malformed, or has no handler. Redelivered or duplicated events have no second effect.
public final class EventConsumer: Service, Sendable {
    public let group: String
    let log: EventLog
    let database: Database
    let handlers: EventHandlers
    let configuration: ConsumerConfiguration
    let logger: Logger
    /// Whether this group subscribes to its handlers' event types (false for a work queue, fed by `send`).
    let subscribes: Bool
    let owner = UUID().uuidString.lowercased()
    let wakeup = Wakeup()
    /// Busy passes of the loop and the deliveries they handled (for benchmarks: the batch size reached).
    public let passes = NIOLockedValueBox<(passes: Int, items: Int)>((0, 0))
    /// Called after a handler's transaction committed (to wake the service's outbox relay for what handlers published).
    let afterCommit: (@Sendable () -> Void)?

    public init(
        group: String,
        log: EventLog,
        database: Database,
        handlers: EventHandlers,
        configuration: ConsumerConfiguration = .init(),
        subscribes: Bool = true,
        logger: Logger,
        afterCommit: (@Sendable () -> Void)? = nil
    ) {
        self.afterCommit = afterCommit
        self.group = group
        self.log = log
        self.database = database
        self.handlers = handlers
        self.configuration = configuration
        self.subscribes = subscribes
        self.logger = logger
        log.addListener(wakeup)
    }

    /// Declares the group's subscriptions; called by `run()`, and by a service at start so that nothing published
    /// after its first start is missed even before the consumer loop runs.
    public func declare() async throws {
        if subscribes { try await log.declare(group: group, types: handlers.types) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.log.waitUntilPrepared() }
        guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
        try await declare()
        var linger = Linger(configuration.linger)
        var sampling = Pacer(every: .seconds(5))
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let handled: Int
            do {
                if sampling.isDue() { try await sampleDepth() }
                await wakeup.pause(linger.beforePass())
                let start = ContinuousClock.now
                handled = try await pollOnce()
                if handled > 0 {
                    passes.withLockedValue {
                        $0.passes += 1; $0.items += handled
                    }
                }
                linger.passBegan(at: start, found: handled)
            } catch {
                logger.warning("Event consumer could not reach the event log", metadata: ["group": "\(group)", "error": "\(error)"])
                handled = 0
            }
            if handled == 0 {
                await cancelWhenGracefulShutdown { await self.wakeup.wait(timeout: self.configuration.pollInterval) }
            }
        }
    }

    /// `event_deliveries_pending{group}`: the group's queue depth (ready or leased, not yet acknowledged).
    func sampleDepth() async throws {
        let depth = try await log.database.withConnection { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM deliveries WHERE group_name = \(bind: self.group) AND status IN ('ready', 'inflight')")
                .first()?.decode(column: "n", as: Int.self) ?? 0
        }
        Gauge(label: "event_deliveries_pending", dimensions: [("group", group)]).record(depth)
    }

    /// Leases and handles one batch; answers how many deliveries it processed.
    ///
    /// The batch's handlers run in order in one transaction of the service's database (one commit for the batch
    /// instead of one per event). When any of them fails, that transaction rolls back as a whole and the batch is
    /// handled again one event at a time, so only the failing event is retried or dead-lettered — at-least-once
    /// delivery already means a handler may run more than once, and its database effects only count when committed.
    @discardableResult
    public func pollOnce() async throws -> Int {
        let claimed = try await log.claim(group: group, limit: configuration.prefetch, owner: owner, visibility: configuration.visibilityTimeout)
        guard !claimed.isEmpty else { return 0 }
        let effects = claimed.filter { handlers.effects[$0.event.type] != nil }
        let deliveries = claimed.filter { handlers.effects[$0.event.type] == nil }
        var handled: [EventLog.Delivery] = []
        if deliveries.count > 1, await handleTogether(deliveries) {
            handled = deliveries
        } else {
            for delivery in deliveries where await handle(delivery) {
                handled.append(delivery)
            }
        }
        // Effects run side by side (each under its own lease), never inside a transaction.
        handled += await withTaskGroup(of: EventLog.Delivery?.self) { group in
            for delivery in effects {
                group.addTask { await self.perform(delivery) ? delivery : nil }
            }
            var performed: [EventLog.Delivery] = []
            for await delivery in group { if let delivery { performed.append(delivery) } }
            return performed
        }
        if !handled.isEmpty {
            Counter(label: "events_handled_total", dimensions: [("group", group), ("outcome", "handled")]).increment(by: handled.count)
        }
        // One acknowledgement for the batch: each handler has committed, so a crash before this line only means
        // redeliveries, which the inbox turns into no-ops.
        try await log.acknowledge(handled)
        return claimed.count
    }

    /// Runs every delivery's handler in one transaction; false (and nothing committed) when any of them failed.
    func handleTogether(_ deliveries: [EventLog.Delivery]) async -> Bool {
        do {
            let fresh = try await database.transaction { sql in
                let fresh = try await self.recordInInbox(deliveries.map(\.event.id), in: sql)
                for delivery in deliveries where fresh.contains(delivery.event.id) {
                    try await self.runHandler(for: delivery.event, in: sql)
                }
                return fresh
            }
            afterCommit?()
            for delivery in deliveries where fresh.contains(delivery.event.id) { await handlers.committed[delivery.event.type]?(delivery.event) }
            return true
        } catch {
            logger.debug("A handler of a batch failed; handling the batch one event at a time", metadata: ["group": "\(group)", "error": "\(error)"])
            return false
        }
    }

    /// Records `ids` in this group's inbox inside the handlers' transaction `sql` (one statement) and answers those that
    /// were not there yet: the events to handle. The rest were handled before and are skipped. Should a handler fail,
    /// the transaction rolls back and takes these inbox rows with it.
    func recordInInbox(_ ids: [String], in sql: any SQLDatabase) async throws -> Set<String> {
        let now = log.clock.millis
        let insert = sql.insert(into: "inbox").columns("group_name", "event_id", "handled_at")
        for id in ids { insert.values(SQLBind(group), SQLBind(id), SQLBind(now)) }
        let rows = try await insert.ignoringConflicts(with: ["group_name", "event_id"]).returning("event_id").all()
        return Set(try rows.map { try $0.decode(column: "event_id", as: String.self) })
    }

    /// Runs the handler of `event` inside the transaction `sql`.
    func runHandler(for event: EventEnvelope, in sql: any SQLDatabase) async throws {
        guard let handler = handlers.handlers[event.type] else {
            throw MalformedEvent(reason: "no handler for event type '\(event.type)' in group '\(group)'")
        }
        // A consumer span per event, in the trace of the request that published it (its `traceparent`); the request's
        // correlation id goes on with what the handler publishes and calls.
        try await CorrelationID.$current.withValue(event.correlationid) {
            try await withSpan("handle \(event.type)", context: TraceContext.context(traceparent: event.traceparent), ofKind: .consumer) { span in
                span.attributes["messaging.consumer.group.name"] = group
                span.attributes["messaging.message.id"] = event.id
                try await handler(event, sql)
            }
        }
    }

    /// Runs the handler of one delivery; true when it committed (to be acknowledged), false when it was retried or
    /// dead-lettered.
    func handle(_ delivery: EventLog.Delivery) async -> Bool {
        let event = delivery.event
        do {
            let fresh = try await database.transaction { sql in
                guard try await !self.recordInInbox([event.id], in: sql).isEmpty else { return false }
                try await self.runHandler(for: event, in: sql)
                return true
            }
            afterCommit?()
            if fresh { await handlers.committed[event.type]?(event) }
            return true
        } catch {
            await failed(delivery, error)
            return false
        }
    }

    /// Performs the effect of one delivery unless its outcome is recorded already, then records it (the inbox); true
    /// when it is done (to be acknowledged), false when it was retried or dead-lettered.
    func perform(_ delivery: EventLog.Delivery) async -> Bool {
        let event = delivery.event
        do {
            let done = try await database.withConnection { sql in
                try await sql.raw("SELECT 1 AS done FROM inbox WHERE group_name = \(bind: self.group) AND event_id = \(bind: event.id)").first()
                    != nil
            }
            if done { return true }
            guard let effect = handlers.effects[event.type] else {
                throw MalformedEvent(reason: "no effect for event type '\(event.type)' in group '\(group)'")
            }
            // Bounded well inside the lease: past it another consumer could take the delivery and perform it again.
            try await CorrelationID.$current.withValue(event.correlationid) {
                try await withSpan("perform \(event.type)", context: TraceContext.context(traceparent: event.traceparent), ofKind: .consumer) {
                    span in
                    span.attributes["messaging.consumer.group.name"] = group
                    span.attributes["messaging.message.id"] = event.id
                    try await withTimeout(configuration.visibilityTimeout * 0.8) { try await effect(event) }
                }
            }
        } catch {
            await failed(delivery, error)
            return false
        }
        do {
            // The outcome: a redelivery from now on is a no-op. Should this write fail, the delivery comes back after its
            // lease and the effect runs again — the one way an effect repeats.
            _ = try await database.withConnection { sql in try await self.recordInInbox([event.id], in: sql) }
            return true
        } catch {
            logger.warning(
                "Could not record a performed effect; it will be performed again", metadata: ["eventId": "\(event.id)", "error": "\(error)"])
            return false
        }
    }

    /// Dead-letters a delivery whose handler or effect failed for good (a ``PermanentFailure``, or its last attempt),
    /// or makes it available again after a backoff.
    func failed(_ delivery: EventLog.Delivery, _ error: any Error) async {
        let event = delivery.event
        var logger = self.logger
        logger[metadataKey: "correlationId"] = event.correlationid.map { .string($0) }
        logger[metadataKey: "eventId"] = .string(event.id)
        logger[metadataKey: "eventType"] = .string(event.type)
        if let permanent = error as? any PermanentFailure {
            logger.error("Event dead-lettered", metadata: ["reason": "\(permanent.description)"])
            Counter(label: "events_handled_total", dimensions: [("group", group), ("outcome", "dead_lettered")]).increment()
            try? await log.deadLetter(delivery, reason: permanent.description)
        } else {
            if delivery.attempts >= configuration.maxAttempts {
                logger.error("Event dead-lettered after its last attempt", metadata: ["attempts": "\(delivery.attempts)", "error": "\(error)"])
                Counter(label: "events_handled_total", dimensions: [("group", group), ("outcome", "dead_lettered")]).increment()
                try? await log.deadLetter(delivery, reason: "failed \(delivery.attempts) times; last error: \(error)")
            } else {
                let delay = configuration.backoff(afterAttempt: delivery.attempts)
                logger.warning("Event handler failed; retrying", metadata: ["attempts": "\(delivery.attempts)", "error": "\(error)"])
                Counter(label: "events_handled_total", dimensions: [("group", group), ("outcome", "retried")]).increment()
                try? await log.retry(delivery, after: delay, error: "\(error)")
            }
        }
    }
}
