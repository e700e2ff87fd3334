import Logging
import SQLKit
import ServiceCore
import ServiceMessaging
import ShopContracts

/// How the order service reacts to other services' events (each inside the consumer's transaction).
enum OrderEvents {
    /// `payment.confirmed` → `paid`. A payment for an order that was cancelled meanwhile (its stock expired, say) must
    /// not keep the money: the order announces its cancellation again, and the payment service refunds the payment.
    static func paymentConfirmed(_ payment: PaymentEvent, in sql: any SQLDatabase, events: OutboxPublisher, logger: Logger) async throws {
        do {
            _ = try await SQLOrderRepository.transition(id: payment.orderId, to: .paid, at: Timestamp.now(), in: sql, events: events)
        } catch OrderRepositoryError.illegalTransition(let from, _) where from == .cancelled {
            logger.warning("Payment for a cancelled order; asking for a refund", metadata: ["orderId": "\(payment.orderId)"])
            let cancelled = OrderEvent(orderId: payment.orderId, userId: payment.userId, items: [], reason: "paid after cancellation")
            try await events.add(EventType.orderCancelled, key: payment.orderId, payload: cancelled, in: sql)
        } catch OrderRepositoryError.illegalTransition(let from, _) {
            // paid, shipped or delivered already: a repeated confirmation changes nothing.
            logger.info("Payment confirmation for an order already \(from.rawValue)", metadata: ["orderId": "\(payment.orderId)"])
        }
    }

    /// Moves an order as an event asks; a move the status machine refuses (an order already cancelled or shipped) is
    /// logged and ignored — events may arrive after the fact, and dead-lettering them would help nobody.
    static func move(
        _ orderId: String, to status: OrderStatus, reason: String? = nil, trackingNumber: String? = nil,
        in sql: any SQLDatabase, events: OutboxPublisher, logger: Logger
    ) async throws {
        do {
            let order = try await SQLOrderRepository.transition(
                id: orderId, to: status, at: Timestamp.now(), reason: reason, trackingNumber: trackingNumber, in: sql, events: events
            )
            if order == nil { logger.warning("Event for an unknown order", metadata: ["orderId": "\(orderId)", "to": "\(status.rawValue)"]) }
        } catch OrderRepositoryError.illegalTransition(let from, let to) {
            logger.info("Order not moved", metadata: ["orderId": "\(orderId)", "from": "\(from.rawValue)", "to": "\(to.rawValue)"])
        }
    }
}
