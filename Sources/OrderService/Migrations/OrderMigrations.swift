import ServiceDatabase

/// The order service's schema, in order.
enum OrderMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "create orders",
            statements: [
                """
                CREATE TABLE orders (
                    id TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    status TEXT NOT NULL,
                    total_cents BIGINT NOT NULL,
                    shipping_address TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL,
                    seq BIGINT NOT NULL
                )
                """,
                "CREATE INDEX orders_by_user ON orders (user_id, created_at, seq)",
                """
                CREATE TABLE order_items (
                    order_id TEXT NOT NULL REFERENCES orders (id),
                    line_no INTEGER NOT NULL,
                    product_id TEXT NOT NULL,
                    name TEXT NOT NULL,
                    quantity INTEGER NOT NULL CHECK (quantity > 0),
                    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
                    PRIMARY KEY (order_id, line_no)
                )
                """,
            ]
        ),
        Migration(
            version: 2,
            name: "replicas of customers and catalog",
            statements: [
                """
                CREATE TABLE customers (
                    user_id TEXT PRIMARY KEY,
                    email TEXT NOT NULL,
                    name TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """,
                """
                CREATE TABLE catalog (
                    product_id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    price_cents BIGINT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """,
            ]
        ),
        Migration(version: 3, name: "tracking numbers", statements: ["ALTER TABLE orders ADD COLUMN tracking_number TEXT"]),
        Migration(
            version: 4,
            name: "checkouts by idempotency key",
            statements: [
                """
                CREATE TABLE checkouts (
                    user_id TEXT NOT NULL,
                    idempotency_key TEXT NOT NULL,
                    saga_id TEXT NOT NULL,
                    PRIMARY KEY (user_id, idempotency_key)
                )
                """
            ]
        ),
        // Retention: a checkout's idempotency record is removed with its finished saga.
        Migration(version: 5, name: "checkouts by saga", statements: ["CREATE INDEX checkouts_by_saga ON checkouts (saga_id)"]),
        // Order numbers from a counter row (one indexed update, serialised by its row lock) instead of MAX(seq) + 1,
        // which scanned the table and could hand two concurrent orders the same number.
        Migration(
            version: 6,
            name: "order number counter",
            statements: [
                "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
                "INSERT INTO counters (name, value) SELECT 'orders', COALESCE(MAX(seq), 0) FROM orders",
            ]
        ),
        // Why an order was cancelled, shown to its customer (it was only in the inventory service's log).
        Migration(version: 7, name: "cancellation reasons", statements: ["ALTER TABLE orders ADD COLUMN cancellation_reason TEXT"]),
        // What a checkout's Idempotency-Key was first used with, so that a reuse with another request is refused (NULL for
        // the keys stored before: those answer their checkout whatever the body, as they did).
        Migration(version: 8, name: "checkout fingerprints", statements: ["ALTER TABLE checkouts ADD COLUMN fingerprint TEXT"]),
    ]
}
