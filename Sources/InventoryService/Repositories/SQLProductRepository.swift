import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceMessaging
import ShopContracts

/// ``ProductRepository`` on the service's own SQL database.
struct SQLProductRepository: ProductRepository {
    let database: Database
    /// Publishes `product.updated` through the outbox, in the transaction of the change.
    let events: OutboxPublisher

    func find(id: String) async throws -> ProductDTO? {
        try await database.withConnection { sql in
            try await sql.raw("SELECT * FROM products WHERE id = \(bind: id)").first().map(Self.product)
        }
    }

    func upsert(id: String, update: ProductUpdate, at now: String) async throws -> (product: ProductDTO, created: Bool) {
        let result = try await database.transaction { sql -> (product: ProductDTO, created: Bool) in
            let existed = try await sql.raw("SELECT id FROM products WHERE id = \(bind: id)").first() != nil
            // Stock may not drop below what orders hold: the update applies only then (atomically with the check).
            let saved = try await sql.raw(
                """
                INSERT INTO products (id, name, price_cents, stock, created_at, updated_at)
                VALUES (\(bind: id), \(bind: update.name), \(bind: Money.cents(update.price)), \(bind: update.stock), \(bind: now), \(bind: now))
                ON CONFLICT (id) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents,
                    stock = excluded.stock, updated_at = excluded.updated_at
                WHERE products.reserved <= excluded.stock
                RETURNING reserved
                """
            ).first()
            guard let saved else {
                let reserved =
                    try await sql.raw("SELECT reserved FROM products WHERE id = \(bind: id)").first()?.decode(column: "reserved", as: Int.self) ?? 0
                throw APIError(.conflict, "Stock cannot be set below the \(reserved) units reserved for orders")
            }
            let product = ProductDTO(
                id: id, name: update.name, price: Money.amount(Money.cents(update.price)), stock: update.stock,
                reserved: try saved.decode(column: "reserved", as: Int.self), updatedAt: now
            )
            let change = ProductChanged(id: id, name: product.name, price: product.price, stock: product.stock, updatedAt: now)
            try await events.add(EventType.productUpdated, key: id, payload: change, in: sql)
            return (product, !existed)
        }
        events.committed()
        return result
    }

    func list(_ page: PageRequest) async throws -> (products: [ProductDTO], total: Int) {
        try await database.withConnection { sql in
            let total = try await sql.raw("SELECT COUNT(*) AS total FROM products").first()?.decode(column: "total", as: Int.self) ?? 0
            let rows = try await sql.raw("SELECT * FROM products ORDER BY id LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)").all()
            return (try rows.map(Self.product), total)
        }
    }

    static func product(_ row: any SQLRow) throws -> ProductDTO {
        ProductDTO(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            price: Money.amount(try row.decode(column: "price_cents", as: Int64.self)),
            stock: try row.decode(column: "stock", as: Int.self),
            reserved: try row.decode(column: "reserved", as: Int.self),
            updatedAt: try row.decode(column: "updated_at", as: String.self)
        )
    }
}
