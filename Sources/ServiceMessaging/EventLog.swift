import Foundation
import Logging
import NIOConcurrencyHelpers
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceResilience

/// The event log and broker, on a SQL database shared by the publishing and consuming processes: SQLite (a WAL file
/// next to the services' files), PostgreSQL (row locks with `SKIP LOCKED`), or in-memory SQLite for unit tests.
///
/// Publishing stores the event once and fans it out into one delivery row per subscribed consumer group, in the same
/// transaction, so a group declared before an event was published always gets it, even if it was offline. Deliveries
/// are claimed with a lease (the visibility timeout), acknowledged after the handler commits, retried with backoff,
/// and dead-lettered after the last attempt. At most one delivery per partition key and group is in flight, and a
/// key's deliveries are claimed in publish order.
public final class EventLog: Sendable {
    /// A claimed delivery: the event and how many times it has been handed out (including this time).
    public struct Delivery: Sendable {
        public var id: Int64
        public var group: String
        public var event: EventEnvelope
        public var attempts: Int
        public var owner: String
    }

    /// A dead letter, for inspection and replay.
    public struct DeadLetter: Sendable, Codable, Equatable {
        public var id: Int64
        public var group: String
        public var eventId: String
        public var eventType: String
        public var attempts: Int
        public var error: String
        public var event: EventEnvelope?
    }

    public let database: Database
    /// The time of leases, retry times and stored times (shared with the log's relays and consumers).
    public let clock: any WallClock
    let logger: Logger
    /// Identifies this process's log in the notifications it sends.
    let instance = UUID().uuidString.lowercased()
    private let listeners = NIOLockedValueBox<[Wakeup]>([])
    private let prepared = Gate()

    public init(database: Database, logger: Logger, clock: any WallClock = SystemClock()) {
        self.database = database
        self.logger = logger
        self.clock = clock
    }

    /// Opens the log described by `url` (empty: `<dataDirectory>/eventlog.sqlite`) and creates its tables.
    public static func open(url: String, dataDirectory: String, logger: Logger, clock: any WallClock = SystemClock()) async throws -> EventLog {
        let database = try await Database.open(
            try DatabaseConfiguration(url: url, service: "eventlog", dataDirectory: dataDirectory),
            logger: logger
        )
        return EventLog(database: database, logger: logger, clock: clock)
    }

    /// Creates the tables of the log a service's settings name (`EVENTLOG_URL`) and closes it (`shop migrate`).
    public static func migrate(for settings: ServiceSettings, logger: Logger) async throws {
        let configuration = try DatabaseConfiguration(url: settings.eventLogURL, service: "eventlog", dataDirectory: settings.dataDirectory)
        try await Database.with(configuration, logger: logger) { database in try await database.prepare(migrations: EventLogMigrations.all) }
    }

    /// Creates the log's tables (call once the database's services run); releases ``waitUntilPrepared()``.
    public func prepare() async throws {
        try await database.prepare(migrations: EventLogMigrations.all)
        markPrepared()
    }

    /// Releases everything waiting in ``waitUntilPrepared()`` (for a log whose tables are known to exist).
    public func markPrepared() {
        prepared.open()
    }

    /// Returns once the log's tables exist (relays and consumers start with this, so they never race the migrations),
    /// or when the task is cancelled.
    public func waitUntilPrepared() async {
        await prepared.wait()
    }

    /// Background work of the log's own database (run it before publishers and consumers, so it stops after them), and
    /// on PostgreSQL the listener that turns `NOTIFY` into immediate wake-ups of this process's consumers.
    public var services: [any Service] {
        database.engine == .postgres ? database.services + [NotificationListener(log: self)] : database.services
    }

    /// The PostgreSQL channel publishers notify after committing.
    static let channel = "shop_events"

    /// Wakes this process's consumers when any process stores events (PostgreSQL `LISTEN`); reconnects after errors.
    struct NotificationListener: Service {
        let log: EventLog

        func run() async throws {
            await cancelWhenGracefulShutdown { await log.waitUntilPrepared() }
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                do {
                    try await cancelWhenGracefulShutdown {
                        try await log.database.listen(channel: EventLog.channel) { [log] origin in
                            // This process's own appends woke its consumers already.
                            if origin != log.instance { log.wakeListeners() }
                        }
                    }
                } catch {
                    guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
                    log.logger.debug("Event notifications interrupted; listening again", metadata: ["error": "\(error)"])
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
                }
            }
        }
    }

    /// Registers a loop to be woken when this process stores events.
    public func addListener(_ wakeup: Wakeup) {
        listeners.withLockedValue { $0.append(wakeup) }
    }

    func wakeListeners() {
        for wakeup in listeners.withLockedValue({ $0 }) { wakeup.signal() }
    }

    // MARK: Publishing

    /// Declares that consumer group `group` receives events of `types` from now on (idempotent). It only adds: an
    /// instance of an older version starting during a rolling update must not take away what a newer one subscribed
    /// to. A type a group stops handling is removed on purpose, with ``unsubscribe(group:types:)``.
    public func declare(group: String, types: [String]) async throws {
        let now = clock.millis
        try await database.transaction { sql in
            for type in types {
                try await sql.raw(
                    """
                    INSERT INTO subscriptions (group_name, event_type, declared_at) VALUES (\(bind: group), \(bind: type), \(bind: now))
                    ON CONFLICT (group_name, event_type) DO NOTHING
                    """
                ).run()
            }
        }
    }

    /// Stops delivering events of `types` to `group` (a deliberate, versioned removal: a handler that was retired).
    public func unsubscribe(group: String, types: [String]) async throws {
        guard !types.isEmpty else { return }
        try await database.withConnection { sql in
            try await sql.delete(from: "subscriptions").where("group_name", .equal, group).where("event_type", .in, types).run()
        }
    }

    /// Stores events (an event already stored, by id, is skipped) and fans each out to the groups subscribed to its
    /// type, or, for a queue message, to that queue alone. Answers how many were new.
    ///
    /// A batch costs the same few statements whatever its size (one on PostgreSQL), and deliveries are created in
    /// publish order, so per-key order holds.
    @discardableResult
    public func append(_ events: [(envelope: EventEnvelope, queue: String?)]) async throws -> Int {
        guard !events.isEmpty else { return 0 }
        let now = clock.millis
        // One row per id: a batch that repeats an event stores it once.
        var seen = Set<String>()
        let unique = events.filter { seen.insert($0.envelope.id).inserted }
        let stored = try await database.engine == .postgres ? appendInOneStatement(unique, now: now) : appendInTransaction(unique, now: now)
        wakeListeners()
        return stored
    }

    /// SQLite: the events, the subscribers' deliveries and the queue messages' deliveries in one transaction (three
    /// statements; statements are cheap in process).
    private func appendInTransaction(_ events: [(envelope: EventEnvelope, queue: String?)], now: Int64) async throws -> Int {
        try await database.transaction { sql -> Int in
            let insert = sql.insert(into: "events")
                .columns("id", "type", "source", "partition_key", "time", "correlation_id", "traceparent", "data", "stored_at")
            for (event, _) in events {
                insert.values(
                    SQLBind(event.id), SQLBind(event.type), SQLBind(event.source), SQLBind(event.partitionkey), SQLBind(event.time),
                    SQLBind(event.correlationid), SQLBind(event.traceparent), SQLBind(event.dataText), SQLBind(now)
                )
            }
            let new = Set(try await insert.ignoringConflicts(with: ["id"]).returning("id").all().map { try $0.decode(column: "id", as: String.self) })
            guard !new.isEmpty else { return 0 }
            let published = events.filter { $0.queue == nil && new.contains($0.envelope.id) }.map(\.envelope.id)
            if !published.isEmpty {
                try await sql.raw(
                    """
                    INSERT INTO deliveries (group_name, event_id, partition_key, status, attempts, available_at, updated_at)
                    SELECT s.group_name, e.id, e.partition_key, 'ready', 0, \(bind: now), \(bind: now)
                    FROM events e JOIN subscriptions s ON s.event_type = e.type
                    WHERE e.id IN (\(binds: published))
                    ORDER BY e.seq, s.group_name
                    ON CONFLICT (group_name, event_id) DO NOTHING
                    """
                ).run()
            }
            let queued = events.filter { $0.queue != nil && new.contains($0.envelope.id) }
            if !queued.isEmpty {
                let deliveries = sql.insert(into: "deliveries")
                    .columns("group_name", "event_id", "partition_key", "status", "attempts", "available_at", "updated_at")
                for (event, queue) in queued {
                    deliveries.values(
                        SQLBind(queue), SQLBind(event.id), SQLBind(event.partitionkey), SQLBind("ready"), SQLBind(0), SQLBind(now), SQLBind(now))
                }
                try await deliveries.ignoringConflicts(with: ["group_name", "event_id"]).run()
            }
            return new.count
        }
    }

    /// PostgreSQL: the same in one statement — atomic on its own, so one round trip instead of five (begin, three
    /// inserts, commit) — whose data-modifying parts feed each other through `RETURNING`. `pg_notify` runs for the
    /// new events only and is delivered at commit.
    private func appendInOneStatement(_ events: [(envelope: EventEnvelope, queue: String?)], now: Int64) async throws -> Int {
        var rows: [SQLQueryString] = []
        for (index, (event, queue)) in events.enumerated() {
            rows.append(
                """
                (\(bind: index), \(bind: event.id), \(bind: event.type), \(bind: event.source), \(bind: event.partitionkey), \(bind: event.time),
                 \(bind: event.correlationid)::text, \(bind: event.traceparent)::text, \(bind: event.dataText), \(bind: queue)::text)
                """
            )
        }
        return try await database.withConnection { sql -> Int in
            try await sql.raw(
                """
                WITH batch (ord, id, type, source, partition_key, time, correlation_id, traceparent, data, queue) AS (
                    VALUES \(rows.joined(separator: ", "))
                ), stored AS (
                    INSERT INTO events (id, type, source, partition_key, time, correlation_id, traceparent, data, stored_at)
                    SELECT id, type, source, partition_key, time, correlation_id, traceparent, data, \(bind: now) FROM batch ORDER BY ord
                    ON CONFLICT (id) DO NOTHING
                    RETURNING seq, id, type, partition_key
                ), fanned AS (
                    INSERT INTO deliveries (group_name, event_id, partition_key, status, attempts, available_at, updated_at)
                    SELECT target, id, partition_key, 'ready', 0, \(bind: now), \(bind: now) FROM (
                        SELECT s.group_name AS target, e.id, e.partition_key, e.seq
                        FROM stored e JOIN batch b ON b.id = e.id JOIN subscriptions s ON s.event_type = e.type
                        WHERE b.queue IS NULL
                        UNION ALL
                        SELECT b.queue, e.id, e.partition_key, e.seq FROM stored e JOIN batch b ON b.id = e.id WHERE b.queue IS NOT NULL
                    ) fan ORDER BY seq, target
                    ON CONFLICT (group_name, event_id) DO NOTHING
                )
                SELECT COUNT(*) AS stored, (SELECT pg_notify(\(bind: Self.channel), \(bind: instance)) FROM stored LIMIT 1) AS notified FROM stored
                """
            ).first()?.decode(column: "stored", as: Int.self) ?? 0
        }
    }

    /// Publishes one event to its subscribers directly (for code without an outbox, such as tests and tools).
    public func publish(_ event: EventEnvelope) async throws {
        try await append([(event, nil)])
    }

    /// Sends one message to work queue `queue`.
    public func send(_ event: EventEnvelope, to queue: String) async throws {
        try await append([(event, queue)])
    }

    // MARK: Consuming

    /// Leases up to `limit` deliveries of `group` that are due: ready ones whose time has come, and in-flight ones
    /// whose lease expired. Only the oldest pending delivery of each partition key is eligible.
    public func claim(group: String, limit: Int, owner: String, visibility: Duration) async throws -> [Delivery] {
        let now = clock.millis
        let until = now + visibility.wholeMilliseconds
        let postgres = database.engine == .postgres
        let update: SQLQueryString = """
            UPDATE deliveries SET status = 'inflight', lease_owner = \(bind: owner), lease_until = \(bind: until),
                attempts = attempts + 1, updated_at = \(bind: now)
            WHERE id IN (
                SELECT d.id FROM deliveries d
                WHERE d.id IN (
                        -- the head of each partition key: its oldest pending delivery
                        SELECT MIN(h.id) FROM deliveries h
                        WHERE h.group_name = \(bind: group) AND h.status IN ('ready', 'inflight')
                        GROUP BY h.partition_key)
                  AND ((d.status = 'ready' AND d.available_at <= \(bind: now)) OR (d.status = 'inflight' AND d.lease_until < \(bind: now)))
                ORDER BY d.id LIMIT \(bind: limit)\(unsafeRaw: postgres ? " FOR UPDATE SKIP LOCKED" : ""))
            RETURNING id AS delivery_id, event_id, attempts
            """
        func delivery(_ row: any SQLRow, _ event: EventEnvelope) throws -> Delivery {
            Delivery(
                id: try row.decode(column: "delivery_id", as: Int64.self), group: group, event: event,
                attempts: try row.decode(column: "attempts", as: Int.self), owner: owner
            )
        }
        if postgres {
            // The lease and the events in one statement (one round trip), atomic on its own.
            let rows = try await database.withConnection { sql in
                try await sql.raw(
                    """
                    WITH claimed AS (\(update))
                    SELECT c.delivery_id, c.attempts, e.* FROM claimed c JOIN events e ON e.id = c.event_id ORDER BY c.delivery_id
                    """
                ).all()
            }
            var claimed: [Delivery] = []
            for row in rows {
                do {
                    claimed.append(try delivery(row, try Self.event(row)))
                } catch {
                    try await deadLetter(id: try row.decode(column: "delivery_id", as: Int64.self), owner: owner, reason: "\(error)")
                }
            }
            return claimed
        }
        // SQLite has no data-modifying WITH: the lease (one statement, atomic on its own), then the events.
        let rows = try await database.withConnection { sql in try await sql.raw(update).all() }
        guard !rows.isEmpty else { return [] }
        let ids = try rows.map { try $0.decode(column: "event_id", as: String.self) }
        let events = try await self.events(ids: ids)
        var claimed: [Delivery] = []
        for row in rows {
            do {
                let id = try row.decode(column: "event_id", as: String.self)
                guard let event = events[id] else { throw UnreadableValue(table: "events", column: "id", value: id) }
                claimed.append(try delivery(row, try event.get()))
            } catch {
                try await deadLetter(id: try row.decode(column: "delivery_id", as: Int64.self), owner: owner, reason: "\(error)")
            }
        }
        return claimed.sorted { $0.id < $1.id }
    }

    /// Marks a delivery handled.
    public func acknowledge(_ delivery: Delivery) async throws {
        try await acknowledge([delivery])
    }

    /// Marks deliveries handled, in one statement per lease owner; one whose lease was lost meanwhile is left alone.
    public func acknowledge(_ deliveries: [Delivery]) async throws {
        guard !deliveries.isEmpty else { return }
        let now = clock.millis
        try await database.withConnection { sql in
            for (owner, owned) in Dictionary(grouping: deliveries, by: \.owner) {
                try await sql.update("deliveries")
                    .set("status", to: "done").set("lease_owner", to: SQLLiteral.null).set("lease_until", to: SQLLiteral.null)
                    .set("last_error", to: SQLLiteral.null).set("updated_at", to: now)
                    .where("id", .in, owned.map(\.id)).where("lease_owner", .equal, owner)
                    .run()
            }
        }
    }

    /// Makes a failed delivery available again after `delay`.
    public func retry(_ delivery: Delivery, after delay: Duration, error: String) async throws {
        let now = clock.millis
        let at = now + delay.wholeMilliseconds
        try await database.withConnection { sql in
            try await sql.raw(
                """
                UPDATE deliveries SET status = 'ready', available_at = \(bind: at), lease_owner = NULL, lease_until = NULL,
                    last_error = \(bind: String(error.prefix(2000))), updated_at = \(bind: now)
                WHERE id = \(bind: delivery.id) AND lease_owner = \(bind: delivery.owner)
                """
            ).run()
        }
    }

    /// Moves a delivery to the dead-letter queue with `reason`.
    public func deadLetter(_ delivery: Delivery, reason: String) async throws {
        try await deadLetter(id: delivery.id, owner: delivery.owner, reason: reason)
    }

    func deadLetter(id: Int64, owner: String, reason: String) async throws {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_until = NULL,
                    last_error = \(bind: String(reason.prefix(2000))), updated_at = \(bind: self.clock.millis)
                WHERE id = \(bind: id) AND lease_owner = \(bind: owner)
                """
            ).run()
        }
    }

    // MARK: Dead letters

    /// Dead letters, oldest first, optionally of one group.
    public func deadLetters(group: String? = nil, limit: Int = 100) async throws -> [DeadLetter] {
        try await database.withConnection { sql in
            let rows = try await sql.raw(
                """
                SELECT d.id, d.group_name, d.event_id, d.attempts, d.last_error, e.type FROM deliveries d
                JOIN events e ON e.id = d.event_id
                WHERE d.status = 'dead' AND (\(bind: group ?? "") = '' OR d.group_name = \(bind: group ?? ""))
                ORDER BY d.id LIMIT \(bind: limit)
                """
            ).all()
            return try rows.map(Self.deadLetter)
        }
    }

    /// One dead letter with its event.
    public func deadLetter(id: Int64) async throws -> DeadLetter? {
        let row = try await database.withConnection { sql in
            try await sql.raw(
                """
                SELECT d.id, d.group_name, d.event_id, d.attempts, d.last_error, e.type FROM deliveries d
                JOIN events e ON e.id = d.event_id WHERE d.status = 'dead' AND d.id = \(bind: id)
                """
            ).first()
        }
        guard let row else { return nil }
        var letter = try Self.deadLetter(row)
        letter.event = try? await events(ids: [letter.eventId])[letter.eventId]?.get()
        return letter
    }

    /// Puts dead letters back in line (all of them when `id` is nil, optionally of one group); answers how many.
    @discardableResult
    public func replay(id: Int64? = nil, group: String? = nil) async throws -> Int {
        let now = clock.millis
        let count = try await database.transaction { sql -> Int in
            let rows = try await sql.raw(
                """
                UPDATE deliveries SET status = 'ready', attempts = 0, available_at = \(bind: now), last_error = NULL, updated_at = \(bind: now)
                WHERE status = 'dead' AND (\(bind: id ?? -1) = -1 OR id = \(bind: id ?? -1))
                  AND (\(bind: group ?? "") = '' OR group_name = \(bind: group ?? ""))
                RETURNING id
                """
            ).all()
            return rows.count
        }
        if count > 0 { wakeListeners() }
        return count
    }

    /// Where group `group`'s delivery of event `eventID` stands: `ready` (with the attempts made so far), `inflight`,
    /// `done` or `dead` (with the last error); nil when the group has no delivery of it.
    public func delivery(group: String, eventID: String) async throws -> (status: String, attempts: Int, lastError: String?)? {
        try await database.withConnection { sql in
            guard
                let row = try await sql.select().columns("status", "attempts", "last_error").from("deliveries")
                    .where("group_name", .equal, group).where("event_id", .equal, eventID).first()
            else { return nil }
            return (
                try row.decode(column: "status", as: String.self), try row.decode(column: "attempts", as: Int.self),
                try row.decode(column: "last_error", as: String?.self)
            )
        }
    }

    /// Delivery counts of `group` by status (for metrics, tests and `shop dlq`).
    public func counts(group: String) async throws -> [String: Int] {
        try await database.withConnection { sql in
            let rows = try await sql.raw(
                "SELECT status, COUNT(*) AS n FROM deliveries WHERE group_name = \(bind: group) GROUP BY status"
            ).all()
            var counts: [String: Int] = [:]
            for row in rows { counts[try row.decode(column: "status", as: String.self)] = try row.decode(column: "n", as: Int.self) }
            return counts
        }
    }

    // MARK: Rows

    /// The events stored under `ids`, each read back or the error that made it unreadable.
    func events(ids: [String]) async throws -> [String: Result<EventEnvelope, any Error>] {
        try await database.withConnection { sql in
            let rows = try await sql.select().column("*").from("events").where("id", .in, ids).all()
            var events: [String: Result<EventEnvelope, any Error>] = [:]
            for row in rows {
                let id = try row.decode(column: "id", as: String.self)
                events[id] = Result { try Self.event(row) }
            }
            return events
        }
    }

    /// An event as stored; data that is not JSON is an ``UnreadableValue`` (its delivery is dead-lettered).
    static func event(_ row: any SQLRow) throws -> EventEnvelope {
        let dataText = try row.decode(column: "data", as: String.self)
        guard let data = try? JSONDecoder().decode(JSONValue.self, from: Data(dataText.utf8)) else {
            throw UnreadableValue(table: "events", column: "data", value: dataText)
        }
        return EventEnvelope(
            id: try row.decode(column: "id", as: String.self),
            type: try row.decode(column: "type", as: String.self),
            source: try row.decode(column: "source", as: String.self),
            partitionKey: try row.decode(column: "partition_key", as: String.self),
            data: data,
            time: try row.decode(column: "time", as: String.self),
            correlationID: try row.decode(column: "correlation_id", as: String?.self),
            traceparent: try row.decode(column: "traceparent", as: String?.self)
        )
    }

    static func deadLetter(_ row: any SQLRow) throws -> DeadLetter {
        DeadLetter(
            id: try row.decode(column: "id", as: Int64.self),
            group: try row.decode(column: "group_name", as: String.self),
            eventId: try row.decode(column: "event_id", as: String.self),
            eventType: try row.decode(column: "type", as: String.self),
            attempts: try row.decode(column: "attempts", as: Int.self),
            error: try row.decode(column: "last_error", as: String?.self) ?? "",
            event: nil
        )
    }
}
