/// Event types the services publish, as in the guide.
public enum EventType {
    public static let userCreated = "user.created"
    public static let userUpdated = "user.updated"
    public static let productUpdated = "product.updated"
    public static let orderCreated = "order.created"
    public static let orderProcessingFailed = "order.processing.failed"
    public static let paymentConfirmed = "payment.confirmed"
    public static let paymentRefunded = "payment.refunded"
    public static let orderFulfillmentRequested = "order.fulfillment.requested"
    public static let orderShipped = "order.shipped"
    public static let orderCancelled = "order.cancelled"
}

/// Work queues, as in the guide.
public enum Queue {
    /// Messages for the notification service: ``OrderNotification``s.
    public static let orderNotifications = "order-notifications"
}

/// Data of `order.processing.failed`: the inventory could not reserve (or keep) the order's stock. Keyed by the order id.
public struct OrderProcessingFailed: Codable, Sendable, Equatable {
    public var orderId: String
    public var reason: String
    public init(orderId: String, reason: String) {
        self.orderId = orderId
        self.reason = reason
    }
}

/// Data of `payment.confirmed` and `payment.refunded`. Keyed by the order id.
public struct PaymentEvent: Codable, Sendable, Equatable {
    public var paymentId: String
    public var orderId: String
    public var userId: String
    public var amount: Double
    public init(paymentId: String, orderId: String, userId: String, amount: Double) {
        self.paymentId = paymentId
        self.orderId = orderId
        self.userId = userId
        self.amount = amount
    }
}

/// Data of `order.fulfillment.requested` (a paid order to ship) and `order.cancelled`. Keyed by the order id.
public struct OrderEvent: Codable, Sendable, Equatable {
    public var orderId: String
    public var userId: String
    public var items: [OrderDTO.Item]
    /// Why an order was cancelled.
    public var reason: String?
    public init(orderId: String, userId: String, items: [OrderDTO.Item], reason: String? = nil) {
        self.orderId = orderId
        self.userId = userId
        self.items = items
        self.reason = reason
    }
}

/// Data of `order.shipped`. Keyed by the order id.
public struct OrderShipped: Codable, Sendable, Equatable {
    public var orderId: String
    public var trackingNumber: String
    public init(orderId: String, trackingNumber: String) {
        self.orderId = orderId
        self.trackingNumber = trackingNumber
    }
}

/// A message of the `order-notifications` queue: what to tell a user about an order.
public struct OrderNotification: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case orderConfirmed = "ORDER_CONFIRMED"
        case paymentProcessed = "PAYMENT_PROCESSED"
        case orderShipped = "ORDER_SHIPPED"
    }

    /// The queue message's event type.
    public static let eventType = "order.notification"

    public var kind: Kind
    public var userId: String
    public var orderId: String
    /// Facts for the message, e.g. `amount`, `trackingNumber`, `items`.
    public var details: [String: String]
    public init(kind: Kind, userId: String, orderId: String, details: [String: String] = [:]) {
        self.kind = kind
        self.userId = userId
        self.orderId = orderId
        self.details = details
    }
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
