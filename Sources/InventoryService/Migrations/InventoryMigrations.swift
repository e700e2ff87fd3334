import ServiceDatabase

/// The inventory service's schema, in order.
enum InventoryMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "create products",
            statements: [
                """
                CREATE TABLE products (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
                    stock BIGINT NOT NULL CHECK (stock >= 0),
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """
            ]
        ),
        Migration(version: 2, name: "reservations and shipments") { sql in
            // Reserved units are part of the stock on hand until shipped; the database itself refuses to reserve more
            // than there is, so no interleaving of orders can oversell.
            if sql.dialect.name == "sqlite" {
                try await sql.raw("ALTER TABLE products ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= stock)")
                    .run()
            } else {
                try await sql.raw("ALTER TABLE products ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0").run()
                try await sql.raw("ALTER TABLE products ADD CONSTRAINT products_reserved_within_stock CHECK (reserved >= 0 AND reserved <= stock)")
                    .run()
            }
            try await sql.raw(
                """
                CREATE TABLE reservations (
                    order_id TEXT NOT NULL,
                    product_id TEXT NOT NULL,
                    quantity BIGINT NOT NULL CHECK (quantity > 0),
                    status TEXT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL,
                    PRIMARY KEY (order_id, product_id)
                )
                """
            ).run()
            try await sql.raw("CREATE INDEX reservations_expiring ON reservations (status, expires_at)").run()
            try await sql.raw(
                """
                CREATE TABLE shipments (
                    order_id TEXT PRIMARY KEY,
                    tracking_number TEXT NOT NULL UNIQUE,
                    shipped_at TEXT NOT NULL
                )
                """
            ).run()
        },
    ]
}
