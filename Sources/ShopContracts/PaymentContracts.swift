/// A payment as the payment service answers it: never the card number or the CVV, only brand and last four digits.
public struct PaymentDTO: Codable, Sendable, Equatable {
    public struct Card: Codable, Sendable, Equatable {
        public var brand: String
        public var last4: String
        public init(brand: String, last4: String) {
            self.brand = brand
            self.last4 = last4
        }
    }

    public var id: String
    public var orderId: String
    public var amount: Double
    /// `completed`, `declined`, `failed` (the processor did not answer), `refunded`.
    public var status: String
    public var card: Card
    public var createdAt: String

    public init(id: String, orderId: String, amount: Double, status: String, card: Card, createdAt: String) {
        self.id = id
        self.orderId = orderId
        self.amount = amount
        self.status = status
        self.card = card
        self.createdAt = createdAt
    }
}

/// A payment status as the order service shows it (`GET /orders/:id/payment`): the payment service's answer, or the
/// guide's fallback (`status: "pending"`, "Payment will be processed later") while the payment service is unavailable.
public struct PaymentStatusDTO: Codable, Sendable, Equatable {
    public var orderId: String
    /// The latest payment's status (`processing`, `completed`, `declined`, `failed`, `refunded`), `none`, or `pending`
    /// in the fallback.
    public var status: String
    public var payment: PaymentDTO?
    /// `payment-service`, or `fallback`.
    public var source: String
    public var message: String?
    /// The order service's circuit breaker for the payment service: `closed`, `open` or `half-open`.
    public var breaker: String?

    public init(orderId: String, status: String, payment: PaymentDTO? = nil, source: String, message: String? = nil, breaker: String? = nil) {
        self.orderId = orderId
        self.status = status
        self.payment = payment
        self.source = source
        self.message = message
        self.breaker = breaker
    }
}
