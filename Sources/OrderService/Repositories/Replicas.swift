import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ShopContracts

/// The order service's local copies of data other services own, fed by their events (the guide's data
/// synchronisation): customers' name and email for orders, and catalog prices to check orders against.
/// An older change (by `updatedAt`) never overwrites a newer one.
struct Replicas: Sendable {
    let database: Database

    static let customers = ReplicaTable("customers", key: "user_id")
    static let catalog = ReplicaTable("catalog", key: "product_id")

    static func upsertCustomer(_ change: UserChanged, in sql: any SQLDatabase) async throws {
        try await customers.upsert(["user_id": change.id, "email": change.email, "name": change.name, "updated_at": change.updatedAt], in: sql)
    }

    static func upsertProduct(_ change: ProductChanged, in sql: any SQLDatabase) async throws {
        try await catalog.upsert(
            ["product_id": change.id, "name": change.name, "price_cents": Money.cents(change.price), "updated_at": change.updatedAt], in: sql
        )
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
