import SQLKit
import ServiceDatabase

/// The schema of the event log: events, consumer-group subscriptions and one delivery row per (group, event).
enum EventLogMigrations {
    /// An auto-incrementing primary key in the engine's own words.
    static func serialKey(_ sql: any SQLDatabase) -> String {
        sql.dialect.name == "sqlite" ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    }

    static let all: [Migration] = [
        Migration(version: 1, name: "create event log") { sql in
            try await sql.raw(
                """
                CREATE TABLE events (
                    seq \(unsafeRaw: serialKey(sql)),
                    id TEXT NOT NULL UNIQUE,
                    type TEXT NOT NULL,
                    source TEXT NOT NULL,
                    partition_key TEXT NOT NULL,
                    time TEXT NOT NULL,
                    correlation_id TEXT,
                    traceparent TEXT,
                    data TEXT NOT NULL,
                    stored_at BIGINT NOT NULL
                )
                """
            ).run()
            try await sql.raw(
                """
                CREATE TABLE subscriptions (
                    group_name TEXT NOT NULL,
                    event_type TEXT NOT NULL,
                    declared_at BIGINT NOT NULL,
                    PRIMARY KEY (group_name, event_type)
                )
                """
            ).run()
            try await sql.raw(
                """
                CREATE TABLE deliveries (
                    id \(unsafeRaw: serialKey(sql)),
                    group_name TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    partition_key TEXT NOT NULL,
                    status TEXT NOT NULL,
                    attempts INTEGER NOT NULL,
                    available_at BIGINT NOT NULL,
                    lease_owner TEXT,
                    lease_until BIGINT,
                    last_error TEXT,
                    updated_at BIGINT NOT NULL,
                    UNIQUE (group_name, event_id)
                )
                """
            ).run()
            try await sql.raw("CREATE INDEX deliveries_by_status ON deliveries (group_name, status, available_at, id)").run()
            try await sql.raw("CREATE INDEX deliveries_by_key ON deliveries (group_name, partition_key, status, id)").run()
        },
        // Claims look only at pending deliveries; without these, each claim walked every delivery ever made.
        Migration(version: 2, name: "index pending deliveries") { sql in
            try await sql.raw(
                "CREATE INDEX deliveries_pending_by_key ON deliveries (group_name, partition_key, id) WHERE status IN ('ready', 'inflight')"
            ).run()
        },
        // Retention: an event is pruned once none of its deliveries is pending or dead, and dead letters by age.
        Migration(version: 3, name: "index deliveries for pruning") { sql in
            try await sql.raw("CREATE INDEX deliveries_by_event ON deliveries (event_id)").run()
            try await sql.raw("CREATE INDEX deliveries_dead_by_age ON deliveries (updated_at) WHERE status = 'dead'").run()
        },
        // Cache invalidations broadcast to every instance (EventLogCacheBackplane); rows live about a minute.
        Migration(version: 4, name: "cache invalidations") { sql in
            try await sql.raw(
                """
                CREATE TABLE cache_invalidations (
                    seq \(unsafeRaw: serialKey(sql)),
                    origin TEXT NOT NULL,
                    body TEXT NOT NULL,
                    created_at BIGINT NOT NULL
                )
                """
            ).run()
            try await sql.raw("CREATE INDEX cache_invalidations_by_age ON cache_invalidations (created_at)").run()
        },
    ]
}

/// Tables a service's own database needs to publish (outbox) and consume (inbox) events; add to its migrations.
public enum MessagingMigrations {
    public static let all: [Migration] = [
        Migration(version: 10_001, name: "messaging outbox and inbox") { sql in
            try await sql.raw(
                """
                CREATE TABLE outbox (
                    seq \(unsafeRaw: EventLogMigrations.serialKey(sql)),
                    id TEXT NOT NULL UNIQUE,
                    envelope TEXT NOT NULL,
                    queue TEXT,
                    created_at BIGINT NOT NULL
                )
                """
            ).run()
            try await sql.raw(
                """
                CREATE TABLE inbox (
                    group_name TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    handled_at BIGINT NOT NULL,
                    PRIMARY KEY (group_name, event_id)
                )
                """
            ).run()
        },
        // Retention: inbox ids are pruned oldest first.
        Migration(version: 10_002, name: "index inbox by age") { sql in
            try await sql.raw("CREATE INDEX inbox_by_age ON inbox (handled_at, group_name, event_id)").run()
        },
        // Outbox rows that cannot be read as events, set aside with the reason instead of blocking the relay.
        Migration(version: 10_003, name: "outbox dead letters") { sql in
            try await sql.raw(
                "CREATE TABLE outbox_dead_letters (seq BIGINT PRIMARY KEY, envelope TEXT NOT NULL, reason TEXT NOT NULL, failed_at BIGINT NOT NULL)"
            ).run()
        },
    ]
}
