import SQLKit
import ServiceCore
import ServiceDatabase

extension EventLog {
    /// Removes, in transactions of at most `limit` events each, the events stored before `storedBefore` that every
    /// group subscribed when they were published has handled (no delivery pending or dead), with their deliveries.
    /// Answers the events and deliveries removed.
    ///
    /// An event with a pending delivery is never removed, so an event id a consumer may still be handed is always in
    /// the log (which is what ``Messaging/pruneInbox(before:limit:)`` relies on).
    public func pruneHandled(storedBefore: Int64, limit: Int = PruneJob.batchSize) async throws -> (events: Int, deliveries: Int) {
        var total = (events: 0, deliveries: 0)
        var after: Int64 = 0
        while !Task.isCancelled {
            let batch = try await database.transaction { sql -> (events: Int, deliveries: Int, last: Int64?) in
                let rows = try await sql.raw(
                    """
                    SELECT e.seq, e.id FROM events e
                    WHERE e.seq > \(bind: after) AND e.stored_at < \(bind: storedBefore)
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status <> 'done')
                    ORDER BY e.seq LIMIT \(bind: limit)
                    """
                ).all()
                guard let last = try rows.last?.decode(column: "seq", as: Int64.self) else { return (0, 0, nil) }
                let ids = try rows.map { try $0.decode(column: "id", as: String.self) }
                let deliveries = try await sql.raw(
                    "DELETE FROM deliveries WHERE status = 'done' AND event_id IN (\(binds: ids)) RETURNING id"
                ).all().count
                // Checked again: a delivery made pending meanwhile (a replay) keeps its event.
                let events = try await sql.raw(
                    """
                    DELETE FROM events WHERE id IN (\(binds: ids))
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status <> 'done')
                    RETURNING seq
                    """
                ).all().count
                return (events, deliveries, rows.count < limit ? nil : last)
            }
            total.events += batch.events
            total.deliveries += batch.deliveries
            guard let last = batch.last else { break }
            after = last
        }
        return total
    }

    /// Removes dead letters moved to the dead-letter queue before `deadBefore` (and never replayed), at most `limit` per
    /// transaction; their events go with the next ``pruneHandled(storedBefore:limit:)``. Answers how many.
    public func pruneDeadLetters(deadBefore: Int64, limit: Int = PruneJob.batchSize) async throws -> Int {
        var total = 0
        while !Task.isCancelled {
            let removed = try await database.withConnection { sql in
                try await sql.raw(
                    """
                    DELETE FROM deliveries WHERE id IN (
                        SELECT id FROM deliveries WHERE status = 'dead' AND updated_at < \(bind: deadBefore) ORDER BY updated_at LIMIT \(bind: limit))
                      AND status = 'dead' AND updated_at < \(bind: deadBefore)
                    RETURNING id
                    """
                ).all().count
            }
            total += removed
            if removed < limit { break }
        }
        return total
    }

    /// Which of `ids` are still in the log.
    public func storedEventIDs(_ ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        return try await database.withConnection { sql in
            Set(try await sql.raw("SELECT id FROM events WHERE id IN (\(binds: ids))").all().map { try $0.decode(column: "id", as: String.self) })
        }
    }

    /// The log's retention work: dead letters past their retention, then handled events past the retention.
    public var pruneJob: PruneJob {
        PruneJob(name: "event log", database: database, ready: { [self] in await waitUntilPrepared() }) { [self] cutoffs in
            let dead = try await pruneDeadLetters(deadBefore: cutoffs.deadLettersSince)
            let handled = try await pruneHandled(storedBefore: cutoffs.retainedSince)
            return ["deliveries": dead + handled.deliveries, "events": handled.events]
        }
    }
}

extension Messaging {
    /// Removes this service's inbox ids recorded before `before` whose events are gone from the log, at most `limit` per
    /// transaction, and answers how many.
    ///
    /// Why this is safe: a consumer can only be handed an event again while one of its deliveries is pending (a lease
    /// that ran out, a retry) or dead (a replay), and the log keeps an event as long as any of its deliveries is
    /// (``EventLog/pruneHandled(storedBefore:limit:)``). So an inbox id is kept for the retention and for as long as the
    /// event might still be delivered. The one way left is a publisher that stored the event and died before deleting
    /// its outbox row, and stays down for longer than the retention: its relay then stores the event again.
    public func pruneInbox(before: Int64, limit: Int = PruneJob.batchSize) async throws -> Int {
        var total = 0
        var cursor: (handledAt: Int64, group: String, eventID: String)?
        while !Task.isCancelled {
            let rows = try await database.withConnection { sql in
                let after: SQLQueryString =
                    cursor.map { "AND (handled_at, group_name, event_id) > (\(bind: $0.handledAt), \(bind: $0.group), \(bind: $0.eventID))" } ?? ""
                return try await sql.raw(
                    """
                    SELECT group_name, event_id, handled_at FROM inbox WHERE handled_at < \(bind: before) \(after)
                    ORDER BY handled_at, group_name, event_id LIMIT \(bind: limit)
                    """
                ).all().map {
                    (
                        handledAt: try $0.decode(column: "handled_at", as: Int64.self), group: try $0.decode(column: "group_name", as: String.self),
                        eventID: try $0.decode(column: "event_id", as: String.self)
                    )
                }
            }
            guard let last = rows.last else { break }
            let live = try await log.storedEventIDs(rows.map(\.eventID))
            let due = Dictionary(grouping: rows.filter { !live.contains($0.eventID) }, by: \.group)
            if !due.isEmpty {
                total += try await database.transaction { sql in
                    var removed = 0
                    for (group, rows) in due {
                        removed += try await sql.raw(
                            "DELETE FROM inbox WHERE group_name = \(bind: group) AND event_id IN (\(binds: rows.map(\.eventID))) RETURNING event_id"
                        ).all().count
                    }
                    return removed
                }
            }
            if rows.count < limit { break }
            cursor = last
        }
        return total
    }

    /// The retention work of this service's messaging: the shared log's (every service that uses the log prunes it; the
    /// work is idempotent and batched) and its own inbox's.
    public var pruneJobs: [PruneJob] {
        [
            log.pruneJob,
            PruneJob(name: "inbox", database: database) { [self] cutoffs in ["inbox": try await pruneInbox(before: cutoffs.retainedSince)] },
            // Outbox rows that could not be read are kept as long as dead letters.
            PruneJob(name: "outbox dead letters", database: database) { [database] cutoffs in
                let removed = try await database.withConnection { sql in
                    try await sql.raw("DELETE FROM outbox_dead_letters WHERE failed_at < \(bind: cutoffs.deadLettersSince) RETURNING seq").all().count
                }
                return ["outbox_dead_letters": removed]
            },
        ]
    }

    /// A pruner of this service's messaging tables and of `jobs`, at the retention of `settings` (`RETENTION`,
    /// `DEAD_LETTER_RETENTION`; a value that is not a duration is an error).
    public func pruner(settings: ServiceSettings, also jobs: [PruneJob] = []) throws -> Pruner {
        Pruner(policy: try RetentionPolicy(settings: settings), jobs: pruneJobs + jobs, logger: logger, clock: log.clock)
    }
}
