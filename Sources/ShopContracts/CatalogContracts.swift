/// A catalog product with its price and stock, as served by the inventory service.
public struct ProductDTO: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// Price in the shop's currency, with at most two decimals.
    public var price: Double
    public var stock: Int
    public var updatedAt: String

    public init(id: String, name: String, price: Double, stock: Int, updatedAt: String) {
        self.id = id
        self.name = name
        self.price = price
        self.stock = stock
        self.updatedAt = updatedAt
    }
}

/// Body of `PUT /inventory/:productId`.
public struct ProductUpdate: Codable, Sendable {
    public var name: String
    public var price: Double
    public var stock: Int
    public init(name: String, price: Double, stock: Int) {
        self.name = name
        self.price = price
        self.stock = stock
    }
}
