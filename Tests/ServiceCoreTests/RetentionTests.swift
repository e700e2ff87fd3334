import Foundation
import Logging
import NIOConcurrencyHelpers
import SQLKit
import ServiceCore
import ServiceHTTP
import ServiceMessaging
import ServiceResilience
import ServiceSaga
import ServiceTesting
import Testing

@testable import ServiceDatabase

@Suite struct RetentionTests {
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func count(_ table: String, in database: Database, where condition: String = "1 = 1") async throws -> Int {
        try await database.withConnection { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM \(ident: table) WHERE \(unsafeRaw: condition)").first()?.decode(column: "n", as: Int.self)
                ?? -1
        }
    }

    // MARK: Settings

    @Test func durationsAndRetentionSettingsParse() throws {
        #expect(Duration.parse("30s") == .seconds(30))
        #expect(Duration.parse(" 7d ") == .seconds(7 * 86_400))
        #expect(Duration.parse("250ms") == .milliseconds(250))
        #expect(Duration.parse("12h") == .seconds(12 * 3600))
        #expect(Duration.parse("5m") == .seconds(300))
        for bad in ["", "7", "d", "-1s", "0s", "1.5h", "7 d", "7w", "١٢s", "99999999999999999999d", "4000d"] {
            #expect(Duration.parse(bad) == nil, "\(bad)")
        }
        var settings = ServiceSettings(name: "x", port: 0)
        #expect(
            try RetentionPolicy(settings: settings) == RetentionPolicy(retention: .seconds(7 * 86_400), deadLetterRetention: .seconds(30 * 86_400)))
        settings.retention = "30s"
        settings.deadLetterRetention = "10s"
        // Dead letters never go before the events beside them.
        #expect(try RetentionPolicy(settings: settings) == RetentionPolicy(retention: .seconds(30), deadLetterRetention: .seconds(30)))
        settings.retention = "soon"
        #expect(throws: RetentionPolicy.Invalid.self) { try RetentionPolicy(settings: settings) }
        settings.retention = "1d"
        settings.deadLetterRetention = "forever"
        #expect(throws: RetentionPolicy.Invalid.self) { try RetentionPolicy(settings: settings) }
        // Pruning runs at least every quarter retention, at most once a second, and at least once a minute.
        #expect(RetentionPolicy(retention: .seconds(2)).interval == .seconds(1))
        #expect(RetentionPolicy(retention: .seconds(20)).interval == .seconds(5))
        #expect(RetentionPolicy(retention: .seconds(7 * 86_400)).interval == .seconds(60))
    }

    // MARK: Event log

    @Test(arguments: TestDatabase.available)
    func handledEventsGoWhilePendingAndDeadOnesStay(_ engine: TestDatabase) async throws {
        try await engine.withDatabase { logDatabase in
            let log = EventLog(database: logDatabase, logger: Logger(label: "log"))
            try await log.prepare()
            try await log.declare(group: "a", types: ["thing.placed"])
            try await log.declare(group: "b", types: ["thing.placed"])
            let events = try (1...3).map { try MessagingTests.event(key: "k\($0)", n: $0) }
            for event in events { try await log.publish(event) }
            // An event nobody subscribes to is handled by everyone at once.
            try await log.publish(try MessagingTests.event("nobody.listens", key: "k0", n: 0))
            // a handles all three; b handles the first, dead-letters the second, leaves the third pending.
            let a = try await log.claim(group: "a", limit: 10, owner: "a1", visibility: .seconds(30))
            try await log.acknowledge(a)
            let b = try await log.claim(group: "b", limit: 10, owner: "b1", visibility: .seconds(30))
            #expect(b.count == 3)
            try await log.acknowledge(b.filter { $0.event.id == events[0].id })
            try await log.deadLetter(try #require(b.first { $0.event.id == events[1].id }), reason: "poison")
            try await log.retry(try #require(b.first { $0.event.id == events[2].id }), after: .seconds(60), error: "later")

            // Nothing is old enough yet.
            #expect(try await log.pruneHandled(storedBefore: Self.now() - 60_000) == (0, 0))
            // Past the retention: the fully handled event and the one without subscribers go, with their deliveries.
            let handled = try await log.pruneHandled(storedBefore: Self.now() + 1000, limit: 1)
            #expect(handled == (2, 2))
            #expect(try await log.storedEventIDs(events.map(\.id)) == [events[1].id, events[2].id])
            // The dead letter stays until its own retention, and its event with it.
            #expect(try await log.pruneDeadLetters(deadBefore: Self.now() - 60_000) == 0)
            #expect(try await log.deadLetters(group: "b").map(\.eventId) == [events[1].id])
            #expect(try await log.pruneDeadLetters(deadBefore: Self.now() + 1000) == 1)
            #expect(try await log.pruneHandled(storedBefore: Self.now() + 1000) == (1, 1))
            // The pending delivery keeps its event, however old.
            #expect(try await log.storedEventIDs(events.map(\.id)) == [events[2].id])
            #expect(try await count("deliveries", in: logDatabase) == 2)
        }
    }

    @Test(arguments: TestDatabase.available)
    func inboxIdsOutliveTheirEventsInTheLog(_ engine: TestDatabase) async throws {
        try await MessagingTests().withMessaging(engine) { service, log in
            let messaging = Messaging(log: log, database: service, source: "test", logger: Logger(label: "m"))
            let consumer = MessagingTests().consumer("orders", service, log, MessagingTests.recordingHandlers())
            try await consumer.declare()
            for n in 1...5 { try await log.publish(try MessagingTests.event(key: "k\(n)", n: n)) }
            while try await consumer.pollOnce() > 0 {}
            #expect(try await count("inbox", in: service) == 5)
            // The events are still in the log (and could still be redelivered): every inbox id stays.
            #expect(try await messaging.pruneInbox(before: Self.now() + 1000, limit: 2) == 0)
            // Once the log has let them go, the ids go too, but only those past the retention.
            #expect(try await log.pruneHandled(storedBefore: Self.now() + 1000).events == 5)
            #expect(try await messaging.pruneInbox(before: Self.now() - 60_000) == 0)
            #expect(try await messaging.pruneInbox(before: Self.now() + 1000, limit: 2) == 5)
            #expect(try await count("inbox", in: service) == 0)
            #expect(try await count("effects", in: service) == 5)
        }
    }

    // MARK: Sagas

    @Test(arguments: TestDatabase.available)
    func finishedSagasGoWithTheirRowsAndFailedOnesStay(_ engine: TestDatabase) async throws {
        let migrations =
            SagaMigrations.all + [
                Migration(version: 1, name: "records", statements: ["CREATE TABLE records (saga_id TEXT NOT NULL)"])
            ]
        try await engine.withDatabase(migrations: migrations) { database in
            let downstream = SagaTests.Downstream()
            let fine = SagaTests.orchestrator(SagaTests.definition(downstream), database)
            let refused = SagaTests.orchestrator(SagaTests.definition(downstream, failure: .permanent("charge")), database)
            var stuck = SagaTests.definition(downstream, failure: .compensationFails("reserve"))
            stuck.steps[2].action = { _, _ in throw SagaStepFailure(status: 409, message: "no") }
            let broken = SagaTests.orchestrator(stuck, database)
            for (id, saga) in [("done-1", fine), ("done-2", fine), ("refused", refused), ("broken", broken)] {
                try await saga.start(id: id, state: SagaTests.Trip()) { sql in
                    try await sql.raw("INSERT INTO records (saga_id) VALUES (\(bind: id))").run()
                    return true
                }
                _ = try await saga.run(id: id)
            }
            try await fine.start(id: "running", state: SagaTests.Trip())
            #expect(try await fine.record(id: "broken")?.status == .failed)
            let removeRecords: @Sendable ([String], any SQLDatabase) async throws -> Int = { ids, sql in
                try await sql.raw("DELETE FROM records WHERE saga_id IN (\(binds: ids)) RETURNING saga_id").all().count
            }
            // Not yet past the retention.
            #expect(try await fine.prune(finishedBefore: Timestamp.format(Date() - 60), also: removeRecords) == (0, 0, 0))
            let pruned = try await fine.prune(finishedBefore: Timestamp.format(Date() + 1), limit: 1, also: removeRecords)
            // completed and compensated sagas go (all three share the definition's name), with history and records;
            #expect(pruned.sagas == 3 && pruned.also == 3 && pruned.steps > 0)
            // the failed one waits for an operator, the running one runs.
            let left = try await database.withConnection { sql in
                try await sql.raw("SELECT id FROM sagas ORDER BY id").all().map { try $0.decode(column: "id", as: String.self) }
            }
            #expect(left == ["broken", "running"])
            #expect(try await count("saga_steps", in: database, where: "saga_id NOT IN ('broken', 'running')") == 0)
            #expect(try await count("saga_steps", in: database, where: "saga_id = 'broken'") > 0)
            #expect(try await count("records", in: database, where: "saga_id = 'broken'") == 1)
            #expect(try await count("records", in: database) == 1)
        }
    }

    // MARK: The pruner

    @Test func thePrunerCountsWhatItRemovedAndGivesSQLiteSpaceBack() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("retention-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/log/eventlog.sqlite"
        try await Database.with(.sqliteFile(path: path), logger: Logger(label: "db")) { database in
            let clock = ManualClock()
            let log = EventLog(database: database, logger: Logger(label: "log"), clock: clock)
            try await log.prepare()
            let padding = String(repeating: "x", count: 2000)
            var batch: [(envelope: EventEnvelope, queue: String?)] = []
            for n in 0..<2000 {
                batch.append(
                    (
                        try EventEnvelope(
                            type: "nobody.listens", source: "test", partitionKey: "k\(n % 10)", payload: ["n": "\(n)", "pad": padding]), nil
                    ))
            }
            try await log.append(batch)
            let pages = {
                try await database.withConnection { sql in
                    try await sql.raw("PRAGMA page_count").first()?.decode(column: "page_count", as: Int.self) ?? 0
                }
            }
            let before = try await pages()

            ServiceMetrics.bootstrap()
            let pruner = Pruner(policy: RetentionPolicy(retention: .seconds(1)), jobs: [log.pruneJob], logger: Logger(label: "pruner"), clock: clock)
            let metric = { try PrometheusText(String(buffer: ServiceMetrics.exposition())).value("retention_pruned_rows_total", ["table": "events"]) }
            let counted = try metric()
            // Exactly as old as the retention: kept; a millisecond older: pruned.
            clock.advance(by: .seconds(1))
            #expect(await pruner.pass() == [:])
            clock.advance(by: .milliseconds(1))
            #expect(await pruner.pass() == ["events": 2000])
            #expect(try metric() - counted == 2000)
            // The freed pages went back to the file system.
            let after = try await pages()
            #expect(after * 10 < before, "\(before) pages before, \(after) after")
            #expect(try await database.reclaimSpace() == 0)
            #expect(await pruner.pass() == [:])
        }
        // The files hold what services keep (password hashes, payments): owner only.
        let mode = { (path: String) in (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
        #expect(try mode(path) == 0o600)
        #expect(try mode(directory + "/log") == 0o700)
        #expect(try FileManager.default.fileExists(atPath: path + "-wal") == false || mode(path + "-wal") == 0o600)
    }

    @Test func anExistingFileIsNarrowedToItsOwnerAndConvertedToIncrementalVacuum() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("retention-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/old.sqlite"
        // A file as earlier versions left it: world-readable, no auto-vacuum.
        let made = try await ChildProcess.run(
            ["python3", "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE t (x TEXT)'); c.commit()", path]
        )
        try #require(made == 0)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let vacuum = try await Database.with(.sqliteFile(path: path), logger: Logger(label: "db")) { database in
            try await database.withConnection { sql in try await sql.raw("PRAGMA auto_vacuum").first()?.decode(column: "auto_vacuum", as: Int.self) }
        }
        #expect(vacuum == 2)
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o600)
    }
}

/// The SQLite thread pool is started by the first database that needs it and shut down by the last one done with it.
@Suite struct SQLiteThreadsTests {
    @Test func thePoolStopsWhenItsLastUserReleasesIt() async throws {
        let threads = SQLiteThreads()
        #expect(!threads.isRunning)
        let first = threads.acquire()
        let second = threads.acquire()
        #expect(first === second && threads.isRunning)
        // Work runs on it while anyone holds it.
        #expect(try await first.runIfActive { 6 * 7 } == 42)
        threads.release()
        #expect(threads.isRunning)
        threads.release()
        #expect(!threads.isRunning)
        // Shut down: it takes no more work.
        await #expect(throws: (any Error).self) { try await first.runIfActive { 1 } }
        // A new user starts a new pool.
        let third = threads.acquire()
        #expect(third !== first && threads.isRunning)
        #expect(try await third.runIfActive { 1 } == 1)
        threads.release()
    }
}
