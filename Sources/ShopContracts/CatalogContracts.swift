/// A catalog product with its price and stock, as served by the inventory service.
public struct ProductDTO: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// Price in the shop's currency, with at most two decimals.
    public var price: Double
    /// Units on hand (reserved ones included, until shipped).
    public var stock: Int
    /// Units held for orders not shipped yet; `stock - reserved` can be ordered.
    public var reserved: Int?
    public var updatedAt: String

    public init(id: String, name: String, price: Double, stock: Int, reserved: Int? = nil, updatedAt: String) {
        self.id = id
        self.name = name
        self.price = price
        self.stock = stock
        self.reserved = reserved
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

/// Body of the inventory's internal `POST /internal/reservations` (the checkout saga's first step).
public struct ReservationRequest: Codable, Sendable {
    public struct Line: Codable, Sendable, Equatable {
        public var productId: String
        public var quantity: Int
        public init(productId: String, quantity: Int) {
            self.productId = productId
            self.quantity = quantity
        }
    }

    public var orderId: String
    public var items: [Line]
    public init(orderId: String, items: [Line]) {
        self.orderId = orderId
        self.items = items
    }
}
