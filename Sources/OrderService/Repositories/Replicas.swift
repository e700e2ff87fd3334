import SQLKit
import ServiceCore
import ServiceDatabase
import ShopContracts

/// The order service's local copies of data other services own, fed by their events (the guide's data
/// synchronisation): customers' name and email for orders, and catalog prices to check orders against.
/// An older change (by `updatedAt`) never overwrites a newer one.
struct Replicas: Sendable {
    let database: Database

    static func upsertCustomer(_ change: UserChanged, in sql: any SQLDatabase) async throws {
        try await sql.raw(
            """
            INSERT INTO customers (user_id, email, name, updated_at)
            VALUES (\(bind: change.id), \(bind: change.email), \(bind: change.name), \(bind: change.updatedAt))
            ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name, updated_at = excluded.updated_at
            WHERE customers.updated_at <= excluded.updated_at
            """
        ).run()
    }

    static func upsertProduct(_ change: ProductChanged, in sql: any SQLDatabase) async throws {
        try await sql.raw(
            """
            INSERT INTO catalog (product_id, name, price_cents, updated_at)
            VALUES (\(bind: change.id), \(bind: change.name), \(bind: Money.cents(change.price)), \(bind: change.updatedAt))
            ON CONFLICT (product_id) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents, updated_at = excluded.updated_at
            WHERE catalog.updated_at <= excluded.updated_at
            """
        ).run()
    }

    /// Stores a product read from the inventory service.
    func store(_ product: ProductDTO) async throws {
        try await database.withConnection { sql in
            try await Self.upsertProduct(
                ProductChanged(id: product.id, name: product.name, price: product.price, stock: product.stock, updatedAt: product.updatedAt), in: sql
            )
        }
    }

    /// Replicated catalog entries of `ids`.
    func products(ids: Set<String>) async throws -> [String: (name: String, price: Double)] {
        guard !ids.isEmpty else { return [:] }
        return try await database.withConnection { sql in
            let rows = try await sql.select().column("*").from("catalog").where("product_id", .in, Array(ids)).all()
            var products: [String: (name: String, price: Double)] = [:]
            for row in rows {
                products[try row.decode(column: "product_id", as: String.self)] = (
                    try row.decode(column: "name", as: String.self), Money.amount(try row.decode(column: "price_cents", as: Int64.self))
                )
            }
            return products
        }
    }
}
