import ServiceCache
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ShopContracts

/// The catalog's reads through the service's caches: one product by id (`product:<id>`, filed under the tag
/// `products`; "not found" remembered briefly, under no tag) and pages of the list (by page and limit, under `lists`).
///
/// The inventory service owns the data, so it invalidates after each change commits: a product saved here forgets
/// that product and every page; a reservation, a shipment, a release or an expiry forgets the order's products and
/// every page. Other instances forget the same through the backplane.
struct ProductCache: Sendable {
    let products: Cache<ProductDTO>
    let pages: Cache<Paginated<ProductDTO>>

    init(caches: Caches, enabled: Bool) {
        products = caches.cache(
            "inventory-products",
            configuration: CacheConfiguration(timeToLive: .seconds(300), negativeTimeToLive: .seconds(5), maxEntries: 50_000, enabled: enabled))
        pages = caches.cache("inventory-pages", configuration: CacheConfiguration(timeToLive: .seconds(60), maxEntries: 1_000, enabled: enabled))
    }

    /// After a change of `ids` committed.
    func forget(ids: some Sequence<String>) async {
        await products.invalidate(keys: ids.map { "product:\($0)" })
        await pages.invalidate(tags: ["lists"])
    }

    /// After a change of an order's stock committed: its products (every product if they cannot be read).
    func forget(order orderId: String, reservations: Reservations, database: Database) async {
        if let ids = try? await reservations.productIds(of: orderId, in: database) {
            await forget(ids: ids)
        } else {
            await products.invalidate(tags: ["products"])
            await pages.invalidate(tags: ["lists"])
        }
    }
}

struct CachedProductRepository<Source: ProductRepository>: ProductRepository {
    let source: Source
    let cache: ProductCache

    func find(id: String) async throws -> ProductDTO? {
        // No product is saved under an id the rules refuse: not found, without a cache entry or a query.
        guard Rules.identifier(id) == nil else { return nil }
        return try await cache.products.get("product:\(id)", tags: ["products"]) { try await source.find(id: id) }
    }

    func upsert(id: String, update: ProductUpdate, at: String) async throws -> (product: ProductDTO, created: Bool) {
        let saved = try await source.upsert(id: id, update: update, at: at)
        await cache.forget(ids: [id])
        return saved
    }

    func list(_ page: PageRequest) async throws -> (products: [ProductDTO], total: Int) {
        let cached = try await cache.pages.get("page:\(page.page):\(page.limit)", tags: ["lists"]) {
            let (products, total) = try await source.list(page)
            return Paginated(results: products, request: page, total: total)
        }
        guard let cached else { return try await source.list(page) }
        return (cached.results, cached.pagination.total)
    }
}
