/// Event types the services publish, as in the guide.
public enum EventType {
    public static let userCreated = "user.created"
    public static let userUpdated = "user.updated"
    public static let productUpdated = "product.updated"
    public static let orderCreated = "order.created"
}

/// Data of `user.created` and `user.updated`: the fields other services replicate. Keyed by the user id.
public struct UserChanged: Codable, Sendable, Equatable {
    public var id: String
    public var email: String
    public var name: String
    public var updatedAt: String
    public init(id: String, email: String, name: String, updatedAt: String) {
        self.id = id
        self.email = email
        self.name = name
        self.updatedAt = updatedAt
    }
}

/// Data of `product.updated`: the catalog entry as it now is. Keyed by the product id.
public struct ProductChanged: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
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

/// Data of `order.created`. Keyed by the order id.
public struct OrderCreated: Codable, Sendable, Equatable {
    public var orderId: String
    public var userId: String
    public var totalAmount: Double
    public var items: [OrderDTO.Item]
    public init(orderId: String, userId: String, totalAmount: Double, items: [OrderDTO.Item]) {
        self.orderId = orderId
        self.userId = userId
        self.totalAmount = totalAmount
        self.items = items
    }
}

/// A user as another service's replica holds it (`GET /notifications/recipients/:id`): the same fields that
/// `user.created` / `user.updated` carry.
public typealias Contact = UserChanged
