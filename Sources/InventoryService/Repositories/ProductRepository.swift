import ServiceCore
import ServiceHTTP
import ShopContracts

/// Storage of the catalog.
protocol ProductRepository: Sendable {
    func find(id: String) async throws -> ProductDTO?
    /// Creates or replaces a product; answers the stored product and whether it was new.
    func upsert(id: String, update: ProductUpdate, at: String) async throws -> (product: ProductDTO, created: Bool)
    func list(_ page: PageRequest) async throws -> (products: [ProductDTO], total: Int)
}
