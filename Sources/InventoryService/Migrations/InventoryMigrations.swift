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
        )
    ]
}
