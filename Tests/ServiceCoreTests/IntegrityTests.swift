import Foundation
import Logging
import NIOConcurrencyHelpers
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceMessaging
import ServiceSaga
import ServiceTesting
import Testing

/// Stored data that cannot be read back is an error that is counted and set aside, never a default and never a stall.
@Suite struct IntegrityTests {
    func unreadable(_ table: String, _ column: String) throws -> Double {
        try PrometheusText(String(buffer: ServiceMetrics.exposition())).value("db_unreadable_values_total", ["table": table, "column": column])
    }

    @Test(arguments: TestDatabase.available)
    func anUnreadableOutboxRowIsDeadLetteredAndTheRowsBehindItMoveOn(_ engine: TestDatabase) async throws {
        ServiceMetrics.bootstrap()
        try await MessagingTests().withMessaging(engine) { service, log in
            let consumer = MessagingTests().consumer("orders", service, log, MessagingTests.recordingHandlers())
            try await consumer.declare()
            try await service.transaction { sql in
                try await Outbox.add(try MessagingTests.event(key: "a", n: 1), in: sql)
                try await sql.raw("INSERT INTO outbox (id, envelope, queue, created_at) VALUES ('broken', '{\"id\": 42', NULL, 0)").run()
                try await Outbox.add(try MessagingTests.event(key: "b", n: 2), in: sql)
            }
            let counted = try unreadable("outbox", "envelope")
            let relay = OutboxRelay(database: service, log: log, logger: Logger(label: "relay"))
            #expect(try await relay.relayBatch() == 3)
            #expect(try await relay.pending() == 0)
            #expect(try unreadable("outbox", "envelope") - counted == 1)
            let letters = try await service.withConnection { sql in
                try await sql.raw("SELECT envelope, reason FROM outbox_dead_letters").all().map {
                    (try $0.decode(column: "envelope", as: String.self), try $0.decode(column: "reason", as: String.self))
                }
            }
            #expect(letters.count == 1 && letters[0].0 == "{\"id\": 42" && letters[0].1.contains("outbox.envelope"))
            // Both readable events went on and were handled.
            while try await consumer.pollOnce() > 0 {}
            #expect(try await MessagingTests().effects(service).map(\.n) == [1, 2])
        }
    }

    @Test(arguments: TestDatabase.available)
    func aCorruptEventIsDeadLetteredWithItsReasonAndTheOthersAreHandled(_ engine: TestDatabase) async throws {
        ServiceMetrics.bootstrap()
        try await MessagingTests().withMessaging(engine) { service, log in
            let consumer = MessagingTests().consumer("orders", service, log, MessagingTests.recordingHandlers())
            try await consumer.declare()
            let events = try (1...3).map { try MessagingTests.event(key: "k\($0)", n: $0) }
            for event in events { try await log.publish(event) }
            try await log.database.withConnection { sql in
                try await sql.raw("UPDATE events SET data = 'not json' WHERE id = \(bind: events[1].id)").run()
            }
            let counted = try unreadable("events", "data")
            while try await consumer.pollOnce() > 0 {}
            #expect(try await MessagingTests().effects(service).map(\.n) == [1, 3])
            let letters = try await log.deadLetters(group: "orders")
            #expect(letters.map(\.eventId) == [events[1].id])
            #expect(letters.first?.error.contains("unreadable value in events.data") == true)
            #expect(try unreadable("events", "data") - counted == 1)
        }
    }

    @Test(arguments: TestDatabase.available)
    func aSagaWithAnUnknownStatusIsAnErrorNotAFailedSaga(_ engine: TestDatabase) async throws {
        ServiceMetrics.bootstrap()
        try await engine.withDatabase(migrations: SagaMigrations.all) { database in
            let saga = SagaTests.orchestrator(SagaTests.definition(SagaTests.Downstream()), database)
            try await saga.start(id: "odd", state: SagaTests.Trip())
            try await database.withConnection { sql in try await sql.raw("UPDATE sagas SET status = 'paused' WHERE id = 'odd'").run() }
            let counted = try unreadable("sagas", "status")
            await #expect(throws: UnreadableValue.self) { try await saga.record(id: "odd") }
            #expect(try unreadable("sagas", "status") - counted == 1)
        }
    }
}
