import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceDiscovery
import ServiceSaga
import ShopContracts

/// What the checkout saga keeps between steps (stored with the saga: no card data).
struct CheckoutState: Codable, Sendable {
    var orderId: String
    var userId: String
    var items: [OrderDTO.Item]
    var shippingAddress: OrderDTO.Address
    var totalCents: Int64
    /// Set by the charge step.
    var paymentId: String?
}

/// Card details of running checkouts, in memory only: card data is never written to the order service's database.
/// After a restart a checkout that had not charged yet cannot (it compensates); one that had is found by its key.
final class CardVault: Sendable {
    private let cards = NIOLockedValueBox<[String: CardDetails]>([:])
    func put(_ card: CardDetails, for saga: String) { cards.withLockedValue { $0[saga] = card } }
    func card(for saga: String) -> CardDetails? { cards.withLockedValue { $0[saga] } }
    func remove(_ saga: String) { _ = cards.withLockedValue { $0.removeValue(forKey: saga) } }
}

/// Body of the payment service's `POST /internal/charges`.
struct ChargeBody: Codable, Sendable {
    var orderId: String
    var userId: String
    var amount: Double
    var paymentMethod = "card"
    var cardDetails: CardDetails
}

/// The guide's `createOrderSaga`: reserve inventory → charge payment → create order; compensations release, refund,
/// cancel. Each remote step carries the saga's key, so a step run twice (a retry, a resumption after a crash) has one
/// effect: the inventory holds by order id, the payment service answers a repeated Idempotency-Key from its first
/// result, and the order insert skips an order that exists.
enum CheckoutSaga {
    static let name = "checkout"

    static func definition(
        inventory: ServiceClient, payments: ServiceClient, repository: SQLOrderRepository, vault: CardVault, chargeTimeout: Duration,
        deadline: Duration = .seconds(60), compensationLimit: Duration = .seconds(86_400)
    ) -> SagaDefinition<CheckoutState> {
        SagaDefinition(
            name: name,
            steps: [
                SagaStep(
                    "reserveInventory", timeout: .seconds(10),
                    action: { state, _ in
                        let lines = Dictionary(state.items.map { ($0.productId, $0.quantity) }, uniquingKeysWith: +)
                            .map { ReservationRequest.Line(productId: $0.key, quantity: $0.value) }.sorted { $0.productId < $1.productId }
                        let response = try await inventory.send(
                            .POST, "/internal/reservations", body: ReservationRequest(orderId: state.orderId, items: lines))
                        try check(response, step: "reserveInventory")
                    },
                    compensation: { state, _ in
                        let response = try await inventory.send(.DELETE, "/internal/reservations/\(state.orderId)")
                        guard response.isSuccess else { throw StepRefused(status: response.status, step: "release inventory") }
                    }
                ),
                SagaStep(
                    "chargePayment", timeout: chargeTimeout,
                    action: { state, context in
                        if let card = vault.card(for: context.sagaID) {
                            let body = ChargeBody(
                                orderId: state.orderId, userId: state.userId, amount: Money.amount(state.totalCents), cardDetails: card)
                            let response = try await payments.send(
                                .POST, "/internal/charges", body: body, headers: [("Idempotency-Key", context.idempotencyKey)])
                            try check(response, step: "chargePayment")
                            state.paymentId = try response.decode(PaymentDTO.self).id
                        } else if let earlier = try await findCharge(payments, state: state, key: context.idempotencyKey),
                            earlier.status == "completed"
                        {
                            // Resumed after a restart: the charge had gone through before it.
                            state.paymentId = earlier.id
                        } else {
                            throw SagaStepFailure(
                                status: 409, message: "The card details were lost in a restart before the charge; nothing was charged")
                        }
                    },
                    compensation: { state, context in
                        var paymentId = state.paymentId
                        if paymentId == nil { paymentId = try await findCharge(payments, state: state, key: context.idempotencyKey)?.id }
                        // The key is forgotten after its lifetime (an operator's late retry): the order's payment, then.
                        if paymentId == nil { paymentId = try await latestPayment(payments, orderId: state.orderId)?.id }
                        guard let paymentId else { return }
                        let response = try await payments.send(.POST, "/internal/charges/\(paymentId)/refund")
                        guard response.isSuccess || response.status == 404 else { throw StepRefused(status: response.status, step: "refund") }
                    }
                ),
                SagaStep(
                    "createOrder", timeout: .seconds(10),
                    action: { state, _ in
                        let now = Timestamp.now()
                        let order = OrderDTO(
                            id: state.orderId, userId: state.userId, status: OrderStatus.paid.rawValue, items: state.items,
                            shippingAddress: state.shippingAddress, totalAmount: Money.amount(state.totalCents), createdAt: now, updatedAt: now
                        )
                        try await repository.createPaid(order)
                    },
                    compensation: { state, _ in
                        do {
                            _ = try await repository.transition(
                                id: state.orderId, to: .cancelled, at: Timestamp.now(), reason: "the checkout could not be completed")
                        } catch OrderRepositoryError.illegalTransition(from: .cancelled, _) {
                            // Cancelled already.
                        }
                    }
                ),
            ],
            baseBackoff: .milliseconds(200), maxBackoff: .seconds(5), deadline: deadline, compensationLimit: compensationLimit
        )
    }

    /// A downstream refusal that is not worth retrying (4xx) becomes the saga's failure, with the downstream's message
    /// and status; a 5xx or an unreachable service is an error the orchestrator retries.
    static func check(_ response: ServiceClient.Response, step: String) throws {
        guard !response.isSuccess else { return }
        guard (400..<500).contains(response.status), response.status != 401, response.status != 403, response.status != 429 else {
            throw StepRefused(status: response.status, step: step)
        }
        let body = (try? JSONSerialization.jsonObject(with: Data(buffer: response.body))) as? [String: Any]
        var message = body?["error"] as? String ?? "\(step) was refused"
        if let reason = body?["reason"] as? String { message += ": \(reason)" }
        throw SagaStepFailure(status: response.status, message: message)
    }

    static func findCharge(_ payments: ServiceClient, state: CheckoutState, key: String) async throws -> PaymentDTO? {
        let query = "userId=\(state.userId)&idempotencyKey=\(key.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? key)"
        let response = try await payments.get("/internal/charges?\(query)")
        if response.status == 404 { return nil }
        guard response.isSuccess else { throw StepRefused(status: response.status, step: "find charge") }
        return try response.decode(PaymentDTO.self)
    }

    /// The order's latest payment at the payment service, if any.
    static func latestPayment(_ payments: ServiceClient, orderId: String) async throws -> PaymentDTO? {
        let response = try await payments.get("/internal/payments?orderId=\(orderId)")
        guard response.isSuccess else { throw StepRefused(status: response.status, step: "find payment") }
        return try response.decode(PaymentStatusDTO.self).payment
    }

    /// A downstream answer the saga retries (5xx), or an identity problem (401/403) that an operator must see.
    struct StepRefused: Error, CustomStringConvertible {
        var status: Int
        var step: String
        var description: String { "\(step) answered \(status)" }
    }
}
