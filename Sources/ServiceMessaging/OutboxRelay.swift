import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceResilience

/// Moves committed outbox rows to the event log, oldest first: stores them in the log, then deletes them from the
/// outbox. A crash in between stores them again on restart, which the log ignores (events are keyed by id), so an
/// event is never marked sent before it is stored and never lost. When the log is unavailable it retries with
/// exponential backoff, on the log's clock.
public final class OutboxRelay: Service, Sendable {
    let database: Database
    let log: EventLog
    let logger: Logger
    let batchSize: Int
    let pollInterval: Duration
    let maxBackoff: Duration
    /// Under load, the least time between two passes (see ``Linger``); 10 ms by default, twice the consumer's: the relay
    /// moves any number of rows per pass, so waiting gathers more, while a consumer takes one event per partition key
    /// per pass and would be capped by a longer wait.
    let linger: Duration
    /// Busy passes of the loop and the rows they moved (for benchmarks: rows per pass is the batch size reached).
    public let passes = NIOLockedValueBox<(passes: Int, items: Int)>((0, 0))
    /// Signal after committing a transaction that added to the outbox, for prompt delivery.
    public let wakeup = Wakeup()

    public init(
        database: Database,
        log: EventLog,
        logger: Logger,
        batchSize: Int = 100,
        pollInterval: Duration = .milliseconds(250),
        maxBackoff: Duration = .seconds(5),
        linger: Duration = .milliseconds(10)
    ) {
        self.database = database
        self.log = log
        self.logger = logger
        self.batchSize = batchSize
        self.pollInterval = pollInterval
        self.maxBackoff = maxBackoff
        self.linger = linger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.log.waitUntilPrepared() }
        var failures = 0
        var linger = Linger(self.linger)
        var sampling = Pacer(every: .seconds(5))
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                if sampling.isDue() { try await sampleOutbox() }
                await wakeup.pause(linger.beforePass())
                let start = ContinuousClock.now
                let moved = try await relayBatch()
                if moved > 0 {
                    passes.withLockedValue {
                        $0.passes += 1; $0.items += moved
                    }
                    // `outbox_relayed_events_total`: events moved from this process's outboxes to the event log.
                    Counter(label: "outbox_relayed_events_total").increment(by: moved)
                }
                linger.passBegan(at: start, found: moved)
                failures = 0
                if moved < batchSize {
                    await cancelWhenGracefulShutdown { await self.wakeup.wait(timeout: self.pollInterval) }
                }
            } catch {
                failures += 1
                let delay = min(maxBackoff, .milliseconds(100) * (1 << min(failures, 6)))
                logger.warning("Outbox relay failed; retrying", metadata: ["error": "\(error)", "retryInMs": "\(delay.wholeMilliseconds)"])
                try? await cancelWhenGracefulShutdown { try await self.log.clock.sleep(for: delay) }
            }
        }
        // A last pass so that what was committed before shutdown is not left waiting for the next start.
        _ = try? await relayBatch()
    }

    /// `outbox_pending_events{schema}` and `outbox_oldest_event_age_seconds{schema}` (the relay's lag), every few seconds.
    func sampleOutbox() async throws {
        let (count, oldest) = try await database.withConnection { sql -> (Int, Int64?) in
            let row = try await sql.raw("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox").first()
            return (try row?.decode(column: "n", as: Int.self) ?? 0, try row?.decode(column: "oldest", as: Int64?.self))
        }
        let schema = database.schema ?? "main"
        Gauge(label: "outbox_pending_events", dimensions: [("schema", schema)]).record(count)
        let now = log.clock.millis
        let age = oldest.map { max(0, Double(now - $0) / 1000) } ?? 0
        Gauge(label: "outbox_oldest_event_age_seconds", dimensions: [("schema", schema)]).record(age)
    }

    /// Relays one batch; answers how many rows it moved.
    @discardableResult
    public func relayBatch() async throws -> Int {
        let rows = try await database.withConnection { sql in
            try await sql.raw("SELECT seq, envelope, queue FROM outbox ORDER BY seq LIMIT \(bind: batchSize)").all()
        }
        guard !rows.isEmpty else { return 0 }
        var sequence: [Int64] = []
        var events: [(envelope: EventEnvelope, queue: String?)] = []
        var unreadable: [(seq: Int64, envelope: String, reason: String)] = []
        for row in rows {
            let seq = try row.decode(column: "seq", as: Int64.self)
            let text = try row.decode(column: "envelope", as: String.self)
            do {
                events.append(
                    (try JSONDecoder().decode(EventEnvelope.self, from: Data(text.utf8)), try row.decode(column: "queue", as: String?.self)))
                sequence.append(seq)
            } catch {
                unreadable.append((seq, text, "\(UnreadableValue(table: "outbox", column: "envelope", value: text)): \(error)"))
            }
        }
        if !unreadable.isEmpty { try await deadLetter(unreadable) }
        if !events.isEmpty { try await log.append(events) }
        try await database.withConnection { sql in
            if !sequence.isEmpty { try await sql.delete(from: "outbox").where("seq", .in, sequence).run() }
        }
        return rows.count
    }

    /// Moves outbox rows that cannot be read as events to `outbox_dead_letters`, with the reason, so they never hold up
    /// the rows behind them; counted in `outbox_dead_lettered_total` and logged.
    func deadLetter(_ rows: [(seq: Int64, envelope: String, reason: String)]) async throws {
        try await database.transaction { sql in
            for row in rows {
                try await sql.raw(
                    """
                    INSERT INTO outbox_dead_letters (seq, envelope, reason, failed_at)
                    VALUES (\(bind: row.seq), \(bind: row.envelope), \(bind: String(row.reason.prefix(2000))), \(bind: self.log.clock.millis))
                    ON CONFLICT (seq) DO NOTHING
                    """
                ).run()
                try await sql.raw("DELETE FROM outbox WHERE seq = \(bind: row.seq)").run()
            }
        }
        for row in rows { logger.error("Outbox row dead-lettered", metadata: ["seq": "\(row.seq)", "reason": "\(row.reason)"]) }
        Counter(label: "outbox_dead_lettered_total").increment(by: rows.count)
    }

    /// Rows waiting in the outbox (the relay's lag).
    public func pending() async throws -> Int {
        try await database.withConnection { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM outbox").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }
}
