import ServiceDatabase

/// The payment service's schema, in order.
enum PaymentMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "create payments",
            statements: [
                """
                CREATE TABLE payments (
                    id TEXT PRIMARY KEY,
                    order_id TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
                    status TEXT NOT NULL,
                    card_brand TEXT NOT NULL,
                    card_last4 TEXT NOT NULL,
                    processor_reference TEXT,
                    refund_reference TEXT,
                    failure TEXT,
                    idempotency_key TEXT,
                    fingerprint TEXT NOT NULL,
                    response_status INTEGER,
                    response_body TEXT,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """,
                // An Idempotency-Key belongs to the user who sent it.
                "CREATE UNIQUE INDEX payments_by_idempotency_key ON payments (user_id, idempotency_key)",
                // At most one payment of an order is in progress or has taken money: no double charge, even racing.
                "CREATE UNIQUE INDEX payments_one_live_per_order ON payments (order_id) WHERE status IN ('processing', 'completed', 'refunded')",
                "CREATE INDEX payments_by_order ON payments (order_id)",
            ]
        ),
        // Reconciliation: when a payment of unknown outcome was last checked with the provider (and found not charged).
        Migration(
            version: 2, name: "payment reconciliation",
            statements: ["ALTER TABLE payments ADD COLUMN checked_at TEXT", "CREATE INDEX payments_unsettled ON payments (status, updated_at)"]
        ),
    ]
}
