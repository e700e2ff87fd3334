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
