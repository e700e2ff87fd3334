import Foundation
import Logging
import NIOConcurrencyHelpers
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ServiceResilience
import ServiceTesting
import Testing

@Suite struct MessagingTests {
    struct Placed: Codable, Sendable {
        var key: String
        var n: Int
    }

    struct Boom: Error, CustomStringConvertible {
        var description: String { "handler exploded" }
    }

    static let serviceMigrations =
        MessagingMigrations.all + [
            Migration(version: 1, name: "effects", statements: ["CREATE TABLE effects (event_id TEXT NOT NULL, k TEXT NOT NULL, n BIGINT NOT NULL)"])
        ]

    /// A service database (with outbox, inbox and an `effects` table) and an event log, both fresh, on `engine`.
    func withMessaging(
        _ engine: TestDatabase, clock: any WallClock = SystemClock(), _ body: @Sendable @escaping (Database, EventLog) async throws -> Void
    ) async throws {
        try await engine.withDatabase(migrations: Self.serviceMigrations) { service in
            try await engine.withDatabase { logDatabase in
                let log = EventLog(database: logDatabase, logger: Logger(label: "log"), clock: clock)
                try await log.prepare()
                try await body(service, log)
            }
        }
    }

    static func event(_ type: String = "thing.placed", key: String, n: Int) throws -> EventEnvelope {
        try EventEnvelope(type: type, source: "test", partitionKey: key, payload: Placed(key: key, n: n))
    }

    /// Handlers that record each `thing.placed` in `effects` (in the consumer's transaction).
    static func recordingHandlers(failWhile: NIOLockedValueBox<Bool>? = nil, calls: NIOLockedValueBox<[String]>? = nil) -> EventHandlers {
        var handlers = EventHandlers()
        handlers.on("thing.placed", as: Placed.self) { placed, event, sql in
            calls?.withLockedValue { $0.append(event.id) }
            if failWhile?.withLockedValue({ $0 }) == true { throw Boom() }
            try await sql.raw("INSERT INTO effects (event_id, k, n) VALUES (\(bind: event.id), \(bind: placed.key), \(bind: placed.n))").run()
        }
        return handlers
    }

    func effects(_ database: Database) async throws -> [(id: String, key: String, n: Int)] {
        try await database.withConnection { sql in
            try await sql.raw("SELECT event_id, k, n FROM effects ORDER BY n").all().map {
                (
                    try $0.decode(column: "event_id", as: String.self), try $0.decode(column: "k", as: String.self),
                    try $0.decode(column: "n", as: Int.self)
                )
            }
        }
    }

    func consumer(
        _ group: String, _ service: Database, _ log: EventLog, _ handlers: EventHandlers, _ configuration: ConsumerConfiguration = .init(),
        subscribes: Bool = true
    )
        -> EventConsumer
    {
        EventConsumer(
            group: group, log: log, database: service, handlers: handlers, configuration: configuration, subscribes: subscribes,
            logger: Logger(label: group))
    }

    @Test(arguments: TestDatabase.available)
    func aRolledBackChangePublishesNothingAndACommittedOneSurvivesARelayCrash(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let consumer = consumer("orders", service, log, Self.recordingHandlers())
            try await consumer.declare()
            let kept = try Self.event(key: "a", n: 1)
            try await service.transaction { sql in try await Outbox.add(kept, in: sql) }
            await #expect(throws: Boom.self) {
                try await service.transaction { sql in
                    try await Outbox.add(try Self.event(key: "a", n: 2), in: sql)
                    throw Boom()
                }
            }
            // The process "died" before its relay ran: a new relay (after restart) finds the committed event.
            let relay = OutboxRelay(database: service, log: log, logger: Logger(label: "relay"))
            #expect(try await relay.pending() == 1)
            // It also died once between storing in the log and clearing the outbox: storing again changes nothing.
            try await log.append([(kept, nil)])
            #expect(try await relay.relayBatch() == 1)
            #expect(try await relay.pending() == 0)
            #expect(try await log.counts(group: "orders") == ["ready": 1])
            #expect(try await consumer.pollOnce() == 1)
            let effects = try await effects(service)
            #expect(effects.map(\.id) == [kept.id])
            #expect(try await log.counts(group: "orders") == ["done": 1])
        }
    }

    @Test(arguments: TestDatabase.available)
    func aRedeliveredEventHasNoSecondEffect(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let calls = NIOLockedValueBox<[String]>([])
            let consumer = consumer("g", service, log, Self.recordingHandlers(calls: calls))
            try await consumer.declare()
            let event = try Self.event(key: "k", n: 1)
            try await log.publish(event)
            try await log.publish(event)  // a duplicate publish is stored once
            #expect(try await consumer.pollOnce() == 1)
            // Force a redelivery, as after a crash between the handler's commit and the acknowledgement.
            try await log.database.withConnection { sql in
                try await sql.raw("UPDATE deliveries SET status = 'ready' WHERE event_id = \(bind: event.id)").run()
            }
            #expect(try await consumer.pollOnce() == 1)
            #expect(try await effects(service).count == 1)
            #expect(try await log.counts(group: "g") == ["done": 1])
        }
    }

    /// What a handler publishes, and what an effect sends, carries the correlation id of the event it handles (the
    /// request that started it all), as a request's own events do.
    @Test(arguments: TestDatabase.available)
    func handlersAndEffectsCarryTheCorrelationIdOfTheirEvent(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let seen = NIOLockedValueBox<[String: String]>([:])
            var handlers = EventHandlers()
            handlers.on("thing.placed", as: Placed.self) { placed, _, sql in
                let next = try EventEnvelope(type: "thing.noted", source: "test", partitionKey: placed.key, payload: placed)
                seen.withLockedValue { $0["published"] = next.correlationid ?? "none" }
                try await Outbox.add(next, in: sql)
            }
            handlers.onEffect("thing.mailed", as: Placed.self) { _, _ in
                seen.withLockedValue { $0["effect"] = CorrelationID.current ?? "none" }
            }
            let consumer = consumer("g", service, log, handlers)
            try await consumer.declare()
            try await log.publish(
                try EventEnvelope(type: "thing.placed", source: "test", partitionKey: "k", payload: Placed(key: "k", n: 1), correlationID: "corr-42"))
            try await log.publish(
                try EventEnvelope(type: "thing.mailed", source: "test", partitionKey: "m", payload: Placed(key: "m", n: 2), correlationID: "corr-43"))
            #expect(try await consumer.pollOnce() == 2)
            #expect(seen.withLockedValue { $0 } == ["published": "corr-42", "effect": "corr-43"])
            // Outside a handler nothing is inherited.
            #expect(CorrelationID.current == nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func aFailingHandlerIsRetriedThenDeadLetteredAndReplayDeliversIt(_ engine: TestDatabase) async throws {
        let clock = ManualClock()
        try await withMessaging(engine, clock: clock) { service, log in
            let failing = NIOLockedValueBox(true)
            let calls = NIOLockedValueBox<[String]>([])
            let configuration = ConsumerConfiguration(maxAttempts: 3, baseBackoff: .seconds(10), maxBackoff: .seconds(60))
            let consumer = consumer("g", service, log, Self.recordingHandlers(failWhile: failing, calls: calls), configuration)
            try await consumer.declare()
            let event = try Self.event(key: "k", n: 1)
            try await log.publish(event)
            // Each failure waits out its backoff on the log's clock: 5–10 s after the first attempt, 10–20 s after the
            // second (exponential, jitter in the upper half). Just short of the least possible delay it is not due.
            for (notYet, due) in [(Duration.milliseconds(4999), Duration.seconds(10)), (.milliseconds(9999), .seconds(20))] {
                #expect(try await consumer.pollOnce() == 1)
                #expect(try await log.counts(group: "g") == ["ready": 1])
                clock.advance(by: notYet)
                #expect(try await consumer.pollOnce() == 0)
                clock.advance(by: due - notYet)
            }
            #expect(try await consumer.pollOnce() == 1)
            #expect(try await log.counts(group: "g") == ["dead": 1])
            #expect(calls.withLockedValue { $0.count } == 3)
            let letters = try await log.deadLetters(group: "g")
            #expect(letters.count == 1)
            #expect(letters.first?.error.contains("handler exploded") == true)
            #expect(letters.first?.attempts == 3)
            let letter = try #require(try await log.deadLetter(id: letters[0].id))
            #expect(letter.event?.id == event.id)
            #expect(try await effects(service).isEmpty)

            failing.withLockedValue { $0 = false }
            #expect(try await log.replay(id: letters[0].id) == 1)
            #expect(try await consumer.pollOnce() == 1)
            #expect(try await effects(service).map(\.id) == [event.id])
            #expect(try await log.deadLetters(group: "g").isEmpty)
        }
    }

    @Test(arguments: TestDatabase.available)
    func aBatchIsHandledInOneTransactionAndOneFailureDoesNotHoldBackTheOthers(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let calls = NIOLockedValueBox<[Int]>([])
            var handlers = EventHandlers()
            handlers.on("thing.placed", as: Placed.self) { placed, event, sql in
                calls.withLockedValue { $0.append(placed.n) }
                if placed.n == 2 { throw Boom() }
                try await sql.raw("INSERT INTO effects (event_id, k, n) VALUES (\(bind: event.id), \(bind: placed.key), \(bind: placed.n))").run()
            }
            let configuration = ConsumerConfiguration(prefetch: 10, maxAttempts: 5, baseBackoff: .seconds(60), maxBackoff: .seconds(60))
            let consumer = consumer("g", service, log, handlers, configuration)
            try await consumer.declare()
            for n in 1...4 { try await log.publish(try Self.event(key: "k\(n)", n: n)) }
            #expect(try await consumer.pollOnce() == 4)
            // Together (1, then 2 fails: nothing of the batch commits), then one at a time.
            #expect(calls.withLockedValue { $0 } == [1, 2, 1, 2, 3, 4])
            // The batch's transaction rolled back because of event 2; the others were then handled once each and
            // acknowledged, and event 2 waits for its retry.
            #expect(try await effects(service).map(\.n) == [1, 3, 4])
            #expect(try await log.counts(group: "g") == ["done": 3, "ready": 1])
            let inbox = try await service.withConnection { sql in
                try await sql.raw("SELECT COUNT(*) AS n FROM inbox WHERE group_name = 'g'").first()?.decode(column: "n", as: Int.self)
            }
            #expect(inbox == 3)

            // A batch without failures commits together and records every event in the inbox.
            for n in 5...7 { try await log.publish(try Self.event(key: "k\(n)", n: n)) }
            calls.withLockedValue { $0 = [] }
            #expect(try await consumer.pollOnce() == 3)
            #expect(calls.withLockedValue { $0 } == [5, 6, 7])
            #expect(try await effects(service).map(\.n) == [1, 3, 4, 5, 6, 7])
            #expect(try await log.counts(group: "g") == ["done": 6, "ready": 1])
        }
    }

    @Test(arguments: TestDatabase.available)
    func anAppendedBatchFansOutToEveryGroupInPublishOrder(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let order = NIOLockedValueBox<[String: [Int]]>([:])
            func handlers(_ group: String) -> EventHandlers {
                var handlers = EventHandlers()
                handlers.on("thing.placed", as: Placed.self) { placed, _, _ in
                    order.withLockedValue { $0["\(group) \(placed.key)", default: []].append(placed.n) }
                }
                return handlers
            }
            let a = consumer("a", service, log, handlers("a"), ConsumerConfiguration(prefetch: 4))
            let b = consumer("b", service, log, handlers("b"), ConsumerConfiguration(prefetch: 7))
            try await a.declare()
            try await b.declare()
            // Three keys interleaved in one batch, a duplicate inside the batch, and one queue message.
            var batch: [(envelope: EventEnvelope, queue: String?)] = []
            for n in 1...10 {
                for key in ["x", "y", "z"] { batch.append((try Self.event(key: key, n: n), nil)) }
            }
            batch.append(batch[4])
            batch.append((try Self.event(key: "q", n: 1), "work"))
            #expect(try await log.append(batch) == 31)
            #expect(try await log.append(batch) == 0)
            #expect(try await log.counts(group: "a") == ["ready": 30])
            #expect(try await log.counts(group: "work") == ["ready": 1])
            try await eventually("both groups") {
                try await a.pollOnce()
                try await b.pollOnce()
                let doneA = try await log.counts(group: "a"), doneB = try await log.counts(group: "b")
                return doneA == ["done": 30] && doneB == ["done": 30]
            }
            for group in ["a", "b"] {
                for key in ["x", "y", "z"] {
                    #expect(order.withLockedValue { $0["\(group) \(key)"] } == Array(1...10), "\(group) \(key)")
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func declaringOnlyAddsAndUnsubscribingRemovesOnPurpose(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { _, log in
            try await log.declare(group: "g", types: ["a", "b"])
            // An older instance declaring fewer types takes nothing away.
            try await log.declare(group: "g", types: ["a"])
            try await log.publish(try Self.event("b", key: "k", n: 1))
            #expect(try await log.counts(group: "g") == ["ready": 1])
            try await log.unsubscribe(group: "g", types: ["b"])
            try await log.publish(try Self.event("b", key: "k", n: 2))
            #expect(try await log.counts(group: "g") == ["ready": 1])
        }
    }

    @Test(arguments: TestDatabase.available)
    func malformedAndUnhandledEventsAreDeadLetteredWithoutStoppingTheConsumer(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let consumer = consumer("work", service, log, Self.recordingHandlers(), subscribes: false)
            try await log.send(EventEnvelope(type: "thing.placed", source: "t", partitionKey: "a", data: .object(["key": .number(1)])), to: "work")
            try await log.send(EventEnvelope(type: "unknown.type", source: "t", partitionKey: "b", data: .null), to: "work")
            let good = try Self.event(key: "c", n: 7)
            try await log.send(good, to: "work")
            try await consumer.pollOnce()
            let reasons = try await log.deadLetters(group: "work").map(\.error)
            #expect(reasons.count == 2)
            #expect(reasons.contains { $0.contains("does not decode") })
            #expect(reasons.contains { $0.contains("no handler for event type 'unknown.type'") })
            #expect(try await effects(service).map(\.id) == [good.id])
        }
    }

    @Test(arguments: TestDatabase.available)
    func anOfflineGroupGetsWhatWasPublishedSinceItWasDeclared(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            try await log.publish(try Self.event(key: "k", n: 0))  // before the group exists: not for it
            let consumer = consumer("late", service, log, Self.recordingHandlers())
            try await consumer.declare()
            for n in 1...3 { try await log.publish(try Self.event(key: "k", n: n)) }
            // The consumer was not running while they were published.
            try await eventually("all three") {
                try await consumer.pollOnce()
                return try await effects(service).count == 3
            }
            #expect(try await effects(service).map(\.n) == [1, 2, 3])
        }
    }

    @Test(arguments: TestDatabase.available)
    func keysStayInOrderAndCompetingConsumersNeverShareAMessage(_ engine: TestDatabase) async throws {
        try await withMessaging(engine) { service, log in
            let calls = NIOLockedValueBox<[String]>([])
            let order = NIOLockedValueBox<[String: [Int]]>([:])
            var handlers = EventHandlers()
            handlers.on("thing.placed", as: Placed.self) { placed, event, sql in
                calls.withLockedValue { $0.append(event.id) }
                order.withLockedValue { $0[placed.key, default: []].append(placed.n) }
                try await sql.raw("INSERT INTO effects (event_id, k, n) VALUES (\(bind: event.id), \(bind: placed.key), \(bind: placed.n))").run()
            }
            let configuration = ConsumerConfiguration(prefetch: 3)
            let consumers = (0..<3).map { _ in consumer("queue", service, log, handlers, configuration, subscribes: false) }
            let keys = ["k0", "k1", "k2", "k3"]
            let perKey = 15
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in keys {
                    group.addTask {
                        for n in 1...perKey { try await log.send(try Self.event(key: key, n: n), to: "queue") }
                    }
                }
                for consumer in consumers {
                    group.addTask {
                        let deadline = ContinuousClock.now + .seconds(30)
                        while try await log.counts(group: "queue")["done", default: 0] < keys.count * perKey, ContinuousClock.now < deadline {
                            if try await consumer.pollOnce() == 0 { try await Task.sleep(for: .milliseconds(2)) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let handled = calls.withLockedValue { $0 }
            #expect(handled.count == keys.count * perKey)
            #expect(Set(handled).count == handled.count)
            for key in keys {
                #expect(order.withLockedValue { $0[key] } == Array(1...perKey), "\(key)")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func anUnacknowledgedDeliveryComesBackAfterItsVisibilityTimeout(_ engine: TestDatabase) async throws {
        let clock = ManualClock()
        try await withMessaging(engine, clock: clock) { service, log in
            try await log.send(try Self.event(key: "k", n: 1), to: "q")
            let first = try await log.claim(group: "q", limit: 10, owner: "a", visibility: .seconds(30))
            #expect(first.count == 1)
            // Until the lease's last millisecond nobody else gets it; a millisecond later the next claim does.
            clock.advance(by: .seconds(30))
            #expect(try await log.claim(group: "q", limit: 10, owner: "b", visibility: .seconds(30)).isEmpty)
            clock.advance(by: .milliseconds(1))
            let again = try await log.claim(group: "q", limit: 10, owner: "b", visibility: .seconds(30))
            #expect(again.first?.attempts == 2)
            #expect(again.first?.event.id == first[0].event.id)
            // The first consumer's late acknowledgement does not touch the delivery it lost.
            try await log.acknowledge(first[0])
            #expect(try await log.counts(group: "q") == ["inflight": 1])
        }
    }

    @Test(arguments: TestDatabase.available)
    func theRelayWaitsOutItsBackoffOnTheLogsClockWhileTheLogFails(_ engine: TestDatabase) async throws {
        let clock = ManualClock()
        try await withMessaging(engine, clock: clock) { service, log in
            let consumer = consumer("orders", service, log, Self.recordingHandlers())
            try await consumer.declare()
            // The log cannot store events: its table is gone for now.
            try await log.database.withConnection { sql in try await sql.raw("ALTER TABLE events RENAME TO events_away").run() }
            let event = try Self.event(key: "a", n: 1)
            try await service.transaction { sql in try await Outbox.add(event, in: sql) }
            let relay = OutboxRelay(database: service, log: log, logger: Logger(label: "relay"), pollInterval: .seconds(3600))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await relay.run() }
                // It failed and sleeps its backoff (200 ms at first) on the log's clock; the event stays in the outbox.
                try await clock.waitForSleepers()
                #expect(try await relay.pending() == 1)
                try await log.database.withConnection { sql in try await sql.raw("ALTER TABLE events_away RENAME TO events").run() }
                #expect(clock.sleepers == 1)
                clock.advance(by: .milliseconds(200))
                try await eventually("the relay to retry once its backoff is over") { try await relay.pending() == 0 }
                group.cancelAll()
            }
            #expect(try await log.counts(group: "orders") == ["ready": 1])
        }
    }

    @Test func backoffGrowsWithJitterAndIsCapped() {
        let configuration = ConsumerConfiguration(baseBackoff: .milliseconds(100), maxBackoff: .seconds(1))
        #expect(configuration.backoff(afterAttempt: 1, random: 0) == .milliseconds(50))
        #expect(configuration.backoff(afterAttempt: 1, random: 1) == .milliseconds(100))
        #expect(configuration.backoff(afterAttempt: 3, random: 1) == .milliseconds(400))
        #expect(configuration.backoff(afterAttempt: 30, random: 1) == .seconds(1))
        #expect(configuration.backoff(afterAttempt: 30, random: 0) == .milliseconds(500))
    }

    @Test(.enabled(if: TestDatabase.postgresURL != nil))
    func postgresNotificationsWakeAConsumerInAnotherProcessAtOnce() async throws {
        try await TestDatabase.postgres.withDatabase(migrations: Self.serviceMigrations) { service in
            let url = TestDatabase.postgres.freshURL(service: "eventlog")
            defer { Task { await TestDatabase.drop([url]) } }
            // Two logs on one schema stand for two processes: one publishes, the other consumes.
            let publisher = try await EventLog.open(url: url, dataDirectory: "", logger: Logger(label: "publisher"))
            let subscriber = try await EventLog.open(url: url, dataDirectory: "", logger: Logger(label: "subscriber"))
            // A poll interval far longer than the test: only a notification can wake the consumer in time.
            let consumer = consumer("far", service, subscriber, Self.recordingHandlers(), ConsumerConfiguration(pollInterval: .seconds(600)))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for background in publisher.services + subscriber.services {
                    group.addTask { try? await background.run() }
                }
                group.addTask { try? await consumer.run() }
                defer { group.cancelAll() }
                try await publisher.prepare()
                try await subscriber.prepare()
                try await consumer.declare()
                // Let the consumer reach its long wait before publishing.
                try await eventually("the consumer to be idle") { try await log(subscriber, hasGroup: "far") }
                try await Task.sleep(for: .milliseconds(200))
                try await publisher.publish(try Self.event(key: "k", n: 1))
                try await eventually("the notified consumer to handle the event", timeout: .seconds(5)) {
                    try await effects(service).count == 1
                }
            }
            await TestDatabase.drop([url])
        }
    }

    func log(_ log: EventLog, hasGroup group: String) async throws -> Bool {
        try await log.database.withConnection { sql in
            try await sql.raw("SELECT 1 FROM subscriptions WHERE group_name = \(bind: group)").first() != nil
        }
    }
}
