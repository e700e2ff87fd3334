import Foundation
import SQLKit

/// The transactional outbox: events are written into the service's own database in the same transaction as the
/// change that causes them, so a rolled-back change publishes nothing and a committed one is never lost.
/// ``OutboxRelay`` moves them to the event log after commit.
public enum Outbox {
    /// Adds `event` to the outbox inside the caller's transaction (`sql` must be the transaction's connection).
    public static func add(_ event: EventEnvelope, in sql: any SQLDatabase) async throws {
        try await insert(event, queue: nil, in: sql)
    }

    /// Adds a message for work queue `queue` inside the caller's transaction.
    public static func send(_ event: EventEnvelope, to queue: String, in sql: any SQLDatabase) async throws {
        try await insert(event, queue: queue, in: sql)
    }

    static func insert(_ event: EventEnvelope, queue: String?, in sql: any SQLDatabase) async throws {
        let envelope = String(decoding: try JSONEncoder().encode(event), as: UTF8.self)
        try await sql.raw(
            """
            INSERT INTO outbox (id, envelope, queue, created_at)
            VALUES (\(bind: event.id), \(bind: envelope), \(bind: queue), \(bind: EventLog.nowMillis()))
            """
        ).run()
    }
}
