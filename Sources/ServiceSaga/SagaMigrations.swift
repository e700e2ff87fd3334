import ServiceDatabase

/// Tables a service needs to orchestrate sagas durably; add to its migrations.
public enum SagaMigrations {
    public static let all: [Migration] = [
        Migration(
            version: 20_001,
            name: "sagas",
            statements: [
                """
                CREATE TABLE sagas (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    status TEXT NOT NULL,
                    state TEXT NOT NULL,
                    next_step INTEGER NOT NULL,
                    compensate_from INTEGER,
                    error TEXT,
                    error_status INTEGER,
                    owner TEXT,
                    lease_until BIGINT NOT NULL,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """,
                "CREATE INDEX sagas_unfinished ON sagas (status, lease_until)",
                """
                CREATE TABLE saga_steps (
                    saga_id TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    step TEXT NOT NULL,
                    status TEXT NOT NULL,
                    error TEXT,
                    at TEXT NOT NULL,
                    PRIMARY KEY (saga_id, seq)
                )
                """,
            ]
        ),
        // The trace the saga was started in, so a run resumed after a crash continues it.
        Migration(version: 20_002, name: "saga trace", statements: ["ALTER TABLE sagas ADD COLUMN traceparent TEXT"]),
        // Retention: finished sagas are pruned oldest first.
        Migration(version: 20_003, name: "index finished sagas", statements: ["CREATE INDEX sagas_by_update ON sagas (status, updated_at)"]),
    ]
}
