/// The order status machine: `pending → confirmed → paid → shipped → delivered`, and `cancelled` before shipping.
public enum OrderStatus: String, Sendable, Codable, CaseIterable {
    case pending
    case confirmed
    case paid
    case shipped
    case delivered
    case cancelled

    /// Whether an order in this status may move to `next`.
    public func canTransition(to next: OrderStatus) -> Bool {
        switch (self, next) {
        case (.pending, .confirmed), (.pending, .paid), (.confirmed, .paid), (.paid, .shipped), (.shipped, .delivered):
            true
        case (.pending, .cancelled), (.confirmed, .cancelled), (.paid, .cancelled):
            true
        default:
            false
        }
    }
}
