/// An order as returned by the order service.
public struct OrderDTO: Codable, Sendable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public var productId: String
        public var name: String
        public var quantity: Int
        public var price: Double
        public init(productId: String, name: String, quantity: Int, price: Double) {
            self.productId = productId
            self.name = name
            self.quantity = quantity
            self.price = price
        }
    }

    public struct Address: Codable, Sendable, Equatable {
        public var street: String
        public var city: String
        public var country: String
        public var zipCode: String
        public init(street: String, city: String, country: String, zipCode: String) {
            self.street = street
            self.city = city
            self.country = country
            self.zipCode = zipCode
        }
    }

    public var id: String
    public var userId: String
    public var status: String
    public var items: [Item]
    public var shippingAddress: Address
    public var totalAmount: Double
    /// The customer's name and email from the order service's replica of users (absent until it has them).
    public var customer: Customer?
    /// The carrier's tracking number, once shipped.
    public var trackingNumber: String?
    /// Why the order was cancelled (`insufficient stock of product-1`, `cancelled by the customer`, …), once it is.
    public var cancellationReason: String?
    public var createdAt: String
    public var updatedAt: String

    /// The customer fields shown on an order.
    public struct Customer: Codable, Sendable, Equatable {
        public var name: String
        public var email: String
        public init(name: String, email: String) {
            self.name = name
            self.email = email
        }
    }

    public init(
        id: String, userId: String, status: String, items: [Item], shippingAddress: Address, totalAmount: Double,
        customer: Customer? = nil, trackingNumber: String? = nil, cancellationReason: String? = nil, createdAt: String, updatedAt: String
    ) {
        self.customer = customer
        self.trackingNumber = trackingNumber
        self.cancellationReason = cancellationReason
        self.id = id
        self.userId = userId
        self.status = status
        self.items = items
        self.shippingAddress = shippingAddress
        self.totalAmount = totalAmount
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// A checkout (`POST /checkout`, `GET /checkout/:id`): the saga's state and history.
public struct CheckoutDTO: Codable, Sendable, Equatable {
    public struct Step: Codable, Sendable, Equatable {
        public var name: String
        /// `started`, `completed`, `failed`, `compensated`, `compensation failed`.
        public var status: String
        public var at: String
        public var error: String?
        public init(name: String, status: String, at: String, error: String? = nil) {
            self.name = name
            self.status = status
            self.at = at
            self.error = error
        }
    }

    public var id: String
    /// `running`, `completed`, `compensating`, `compensated`, `failed` (needs an operator).
    public var status: String
    /// The order, once the checkout completed.
    public var orderId: String?
    /// Why it did not complete.
    public var error: String?
    public var steps: [Step]?

    public init(id: String, status: String, orderId: String? = nil, error: String? = nil, steps: [Step]? = nil) {
        self.id = id
        self.status = status
        self.orderId = orderId
        self.error = error
        self.steps = steps
    }
}
