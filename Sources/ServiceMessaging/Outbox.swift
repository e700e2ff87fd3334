import Foundation
import SQLKit
import ServiceCore
import ServiceResilience
import Tracing

/// The transactional outbox: events are written into the service's own database in the same transaction as the
/// change that causes them, so a rolled-back change publishes nothing and a committed one is never lost.
/// ``OutboxRelay`` moves them to the event log after commit.
public enum Outbox {
    /// Adds `event` to the outbox inside the caller's transaction (`sql` must be the transaction's connection).
    public static func add(_ event: EventEnvelope, in sql: any SQLDatabase, clock: any WallClock = SystemClock()) async throws {
        try await insert(event, queue: nil, in: sql, clock: clock)
    }

    /// Adds a message for work queue `queue` inside the caller's transaction.
    public static func send(_ event: EventEnvelope, to queue: String, in sql: any SQLDatabase, clock: any WallClock = SystemClock()) async throws {
        try await insert(event, queue: queue, in: sql, clock: clock)
    }

    /// `created_at` is when it was added, for the relay's lag (`outbox_oldest_event_age_seconds`).
    static func insert(_ event: EventEnvelope, queue: String?, in sql: any SQLDatabase, clock: any WallClock) async throws {
        let encoded = try JSONEncoder().encode(event)
        let envelope = String(decoding: encoded, as: UTF8.self)
        if let recording = ContractRecording.events {
            // For the contract check of a test run (scripts/contracts.py events): the queue, and the envelope as sent.
            let queueJSON = try JSONEncoder().encode(queue)
            recording.append(Data(#"{"queue":"#.utf8) + queueJSON + Data(#","envelope":"#.utf8) + encoded + Data("}".utf8))
        }
        try await sql.raw(
            """
            INSERT INTO outbox (id, envelope, queue, created_at)
            VALUES (\(bind: event.id), \(bind: envelope), \(bind: queue), \(bind: clock.millis))
            """
        ).run()
    }
}

/// What a repository needs to publish: adds events to the outbox inside its transaction, then wakes the relay.
public struct OutboxPublisher: Sendable {
    /// The CloudEvents `source` of this service's events.
    public let source: String
    let onCommit: @Sendable () -> Void
    /// The time outbox rows are stamped with: the event log's, which the relay measures their age by.
    let clock: any WallClock

    public init(source: String, clock: any WallClock = SystemClock(), onCommit: @escaping @Sendable () -> Void) {
        self.source = source
        self.clock = clock
        self.onCommit = onCommit
    }

    /// Adds an event of `type` about `key` carrying `payload`, inside the caller's transaction.
    public func add(_ type: String, key: String, payload: some Encodable, in sql: any SQLDatabase) async throws {
        try await publishing(type, destination: type) {
            try await Outbox.add(try EventEnvelope(type: type, source: source, partitionKey: key, payload: payload), in: sql, clock: clock)
        }
    }

    /// Adds a message of `type` for work queue `queue` carrying `payload`, inside the caller's transaction.
    public func send(_ type: String, to queue: String, key: String, payload: some Encodable, in sql: any SQLDatabase) async throws {
        try await publishing(type, destination: queue) {
            try await Outbox.send(
                try EventEnvelope(type: type, source: source, partitionKey: key, payload: payload), to: queue, in: sql, clock: clock)
        }
    }

    /// A producer span around publishing: the envelope is made inside it, so its `traceparent` names this span and the
    /// consumers' spans hang under it.
    private func publishing(_ type: String, destination: String, _ body: () async throws -> Void) async throws {
        try await withSpan("publish \(type)", ofKind: .producer) { span in
            span.attributes["messaging.system"] = "outbox"
            span.attributes["messaging.operation.type"] = "publish"
            span.attributes["messaging.destination.name"] = destination
            try await body()
        }
    }

    /// Call after the transaction committed, so the relay moves the events at once instead of at its next poll.
    public func committed() { onCommit() }
}
