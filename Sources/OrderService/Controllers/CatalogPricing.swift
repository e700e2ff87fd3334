import Foundation
import ServiceCache
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ShopContracts

/// Prices order lines from the catalog: a client cannot set its own price. Used by `POST /orders` and `POST /checkout`.
struct CatalogPricing: Sendable {
    let catalog: ServiceClient
    let replicas: Replicas
    /// The replica's entries by product id, forgotten when a `product.updated` event or a fresh read from the inventory
    /// service changes the replica.
    let cache: Cache<CatalogEntry>

    static func key(_ productId: String) -> String { "catalog:\(productId)" }

    /// The lines as order items at catalog prices; 400 for unknown products, 409 for prices that differ.
    func items(for lines: [NewOrder.Line]) async throws -> [OrderDTO.Item] {
        let products = try await catalogPrices(for: lines)
        var unknown: [APIError.FieldError] = []
        var mismatched: [APIError.FieldError] = []
        var items: [OrderDTO.Item] = []
        for (index, line) in lines.enumerated() {
            guard let product = products[line.productId] else {
                unknown.append(.init(field: "items.\(index).productId", message: "\"items.\(index).productId\" is not a known product"))
                continue
            }
            if Money.cents(line.price) != Money.cents(product.price) {
                mismatched.append(
                    .init(field: "items.\(index).price", message: "\"items.\(index).price\" must equal the catalog price \(product.price)"))
            }
            items.append(OrderDTO.Item(productId: product.id, name: product.name, quantity: line.quantity, price: product.price))
        }
        guard unknown.isEmpty else { throw APIError.validation(unknown) }
        guard mismatched.isEmpty else { throw APIError(.conflict, "Price mismatch", details: mismatched) }
        return items
    }

    /// Catalog entries of the ordered products: from the replica when it agrees with the prices given, otherwise (a
    /// product not replicated yet, or a price that differs) from the inventory service, which is the authority and
    /// refreshes the replica. Unknown ids are absent.
    func catalogPrices(for lines: [NewOrder.Line]) async throws -> [String: ProductDTO] {
        // Each product through the cache, side by side (a miss reads the replica for that product).
        var products = try await withThrowingTaskGroup(of: ProductDTO?.self) { group in
            for id in Set(lines.map(\.productId)) {
                group.addTask { [cache, replicas] in
                    let entry = try await cache.get(Self.key(id)) {
                        try await replicas.products(ids: [id])[id].map { CatalogEntry(name: $0.name, price: $0.price) }
                    }
                    return entry.map { ProductDTO(id: id, name: $0.name, price: $0.price, stock: 0, updatedAt: "") }
                }
            }
            var products: [String: ProductDTO] = [:]
            for try await product in group {
                if let product { products[product.id] = product }
            }
            return products
        }
        let toFetch = Set(
            lines.filter { line in products[line.productId].map { Money.cents($0.price) != Money.cents(line.price) } ?? true }.map(\.productId))
        let fetched = try await fetchProducts(toFetch)
        for id in toFetch { products[id] = fetched[id] }
        for product in fetched.values {
            try await replicas.store(product)
            await cache.invalidate(keys: [Self.key(product.id)])
        }
        return products
    }

    /// Current catalog entries of `ids` from the inventory service (each asked once, concurrently).
    func fetchProducts(_ ids: Set<String>) async throws -> [String: ProductDTO] {
        try await withThrowingTaskGroup(of: ProductDTO?.self) { group in
            for id in ids {
                group.addTask {
                    let response = try await catalog.get("/inventory/\(id)")
                    switch response.status {
                    case 200: return try response.decode(ProductDTO.self)
                    case 404: return nil
                    default: throw APIError(.badGateway, "Inventory service answered \(response.status)")
                    }
                }
            }
            var products: [String: ProductDTO] = [:]
            for try await product in group {
                if let product { products[product.id] = product }
            }
            return products
        }
    }
}

/// A product's name and price as the order service's replica holds them.
struct CatalogEntry: Codable, Sendable {
    var name: String
    var price: Double
}
