import SQLKit
import ServiceDatabase

/// The provider's ledger: charges, refunds and the answers given to idempotency keys.
enum LedgerMigrations {
    static let all: [Migration] = [
        Migration(version: 1, name: "ledger") { sql in
            let serial = sql.dialect.name == "sqlite" ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
            try await sql.raw(
                """
                CREATE TABLE charges (
                    seq \(unsafeRaw: serial),
                    id TEXT NOT NULL UNIQUE,
                    amount BIGINT NOT NULL CHECK (amount > 0),
                    amount_refunded BIGINT NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
                    currency TEXT NOT NULL,
                    status TEXT NOT NULL,
                    failure_code TEXT,
                    failure_message TEXT,
                    card_brand TEXT NOT NULL,
                    card_last4 TEXT NOT NULL,
                    card_exp_month INTEGER NOT NULL,
                    card_exp_year INTEGER NOT NULL,
                    metadata TEXT NOT NULL,
                    created BIGINT NOT NULL
                )
                """
            ).run()
            try await sql.raw("CREATE INDEX charges_by_created ON charges (created, seq)").run()
            try await sql.raw(
                """
                CREATE TABLE refunds (
                    id TEXT PRIMARY KEY,
                    charge_id TEXT NOT NULL REFERENCES charges (id),
                    amount BIGINT NOT NULL CHECK (amount > 0),
                    created BIGINT NOT NULL
                )
                """
            ).run()
            try await sql.raw(
                """
                CREATE TABLE idempotency_keys (
                    key TEXT NOT NULL,
                    operation TEXT NOT NULL,
                    fingerprint TEXT NOT NULL,
                    status INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    created_ms BIGINT NOT NULL,
                    PRIMARY KEY (key, operation)
                )
                """
            ).run()
            try await sql.raw("CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms)").run()
        }
    ]
}
