import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceResilience
import ShopContracts

/// `POST /payments` (charge an order), `GET /payments/:id` (the caller's payment).
struct PaymentController {
    let repository: PaymentRepository
    let orders: ServiceClient
    let processor: any PaymentProcessor
    /// How long the processor has to answer a charge.
    let processorTimeout: Duration
    let verifier: TokenVerifier

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("payments")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireUser())
            .post(use: pay)
            .get(":id", use: get)
        // For the checkout saga (the order service's token): charge, look a charge up by its key, refund.
        let charges = router.group("internal/charges").add(middleware: AuthMiddleware(verifier: verifier))
        charges.group().add(middleware: RequireServiceScope(Scope.paymentsCharge))
            .post(use: chargeForService)
            .get(use: findForService)
        charges.group().add(middleware: RequireServiceScope(Scope.paymentsRefund))
            .post(":id/refund", use: refundForService)
        // For the order service's payment-status view.
        router.group("internal/payments").add(middleware: AuthMiddleware(verifier: verifier)).add(middleware: RequireServiceScope(Scope.paymentsRead))
            .get(use: statusForService)
    }

    /// `GET /internal/payments?orderId=`: the order's latest payment attempt (`status: "none"` when there is none).
    @Sendable func statusForService(request: Request, context: ServiceRequestContext) async throws -> PaymentStatusDTO {
        guard let orderId = request.uri.queryParameters.get("orderId"), !orderId.isEmpty, orderId.unicodeScalars.count <= 100 else {
            throw APIError.validation([.init(field: "orderId", message: "\"orderId\" is required")])
        }
        let latest = try await repository.latest(orderId: String(orderId))
        return PaymentStatusDTO(
            orderId: String(orderId), status: latest?.payment.status ?? "none", payment: latest?.payment, source: "payment-service")
    }

    /// A request that may succeed when repeated shortly (another one with its key or order is still charging): 503
    /// with `Retry-After`, so a caller retries instead of taking it as a refusal.
    static func inProgress(_ message: String) -> APIError {
        APIError(.serviceUnavailable, message, headers: [.retryAfter: "1"], extra: ["code": "in_progress"])
    }

    /// `GET /internal/charges?userId=&idempotencyKey=`: the payment a charge with that key made, if any.
    @Sendable func findForService(request: Request, context: ServiceRequestContext) async throws -> PaymentDTO {
        guard let userId = request.uri.queryParameters.get("userId"), let key = request.uri.queryParameters.get("idempotencyKey") else {
            throw APIError.validation([.init(field: "idempotencyKey", message: "\"userId\" and \"idempotencyKey\" are required")])
        }
        guard let record = try await repository.find(userId: userId, key: key) else { throw APIError.notFound("Payment not found") }
        return record.payment
    }

    /// `POST /internal/charges/:id/refund`: refunds a completed payment (once, however often asked); a payment that took
    /// no money is answered as it is.
    @Sendable func refundForService(request: Request, context: ServiceRequestContext) async throws -> PaymentDTO {
        let id = try context.parameters.require("id")
        guard let current = try await repository.find(id: id) else { throw APIError.notFound("Payment not found") }
        // A charge still running may yet take money: answer "try again" rather than "nothing to refund".
        if current.payment.status == "processing" { throw Self.inProgress("The payment is still being charged") }
        let refunded: PaymentRecord?
        do {
            refunded = try await repository.refund(id: id, processor: processor)
        } catch let refused as ProviderProcessor.Refused {
            // Refunded out of band, or a charge the provider no longer has: asking again will not help.
            context.logger.warning("The payment provider refused a refund", metadata: ["paymentId": "\(id)", "error": "\(refused)"])
            throw APIError(.badGateway, "The payment provider refused the refund", extra: ["reason": .string(refused.message)])
        } catch let unavailable as ProcessorUnavailable {
            context.logger.warning("The payment provider did not answer a refund", metadata: ["paymentId": "\(id)", "error": "\(unavailable)"])
            throw APIError(
                .serviceUnavailable, "The payment provider is unavailable", headers: [.retryAfter: "1"], extra: ["code": "provider_unavailable"])
        }
        guard let record = refunded else { throw APIError.notFound("Payment not found") }
        context.logger.info("Refund requested", metadata: ["paymentId": "\(id)", "status": "\(record.payment.status)"])
        return record.payment
    }

    /// The validated body of `POST /payments`.
    struct PaymentInput: Sendable {
        var orderId: String
        var amount: Double
        var card: Card
        /// Whose payment it is: given by the calling service on the internal endpoint.
        var userId: String?

        /// What identifies the request for its Idempotency-Key: everything but the secrets.
        var fingerprint: String {
            "\(orderId)|\(Money.cents(amount))|\(card.brand)|\(card.last4)|\(card.expiryMonth)/\(card.expiryYear)"
        }

        init(body: JSONValue, now: Date, forService: Bool = false) throws {
            self = try Validation.validate(body) { body in
                body.allowOnly(
                    forService
                        ? ["orderId", "userId", "amount", "paymentMethod", "cardDetails"] : ["orderId", "amount", "paymentMethod", "cardDetails"])
                let userId = forService ? body.string("userId", maxLength: 64, rule: Rules.identifier) : nil
                let orderId = body.string("orderId", maxLength: 64, rule: Rules.identifier)
                let amount = body.number("amount", positive: true, maximum: 1_000_000, maxFractionDigits: 2)
                let card = CardDetails.read(from: body, now: now)
                guard let orderId, let amount, let card, !forService || userId != nil else { return nil }
                return PaymentInput(orderId: orderId, amount: amount, card: card, userId: userId)
            }
        }

        init(orderId: String, amount: Double, card: Card, userId: String?) {
            self.orderId = orderId
            self.amount = amount
            self.card = card
            self.userId = userId
        }
    }

    @Sendable func pay(request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let key = try IdempotencyKey.header(of: request)
        var request = request
        let input = try PaymentInput(body: try await request.jsonBody(context: context), now: .now)
        return try await charge(input, userId: identity.subject, key: key, logger: context.logger) { amount in
            // The order, asked for as this service (orders:read); only its owner may pay it, in full, once.
            let order = try await fetchOrder(input.orderId)
            guard order.userId == identity.subject else { throw APIError.forbidden("This order belongs to someone else") }
            guard Money.cents(order.totalAmount) == Money.cents(input.amount) else {
                throw APIError.validation([
                    .init(field: "amount", message: "\"amount\" must equal the order total \(String(format: "%.2f", order.totalAmount))")
                ])
            }
            if order.status == "paid" || order.status == "shipped" || order.status == "delivered" {
                throw APIError(.conflict, "Order is already paid")
            }
            guard order.status == "pending" || order.status == "confirmed" else {
                throw APIError(.conflict, "An order that is \(order.status) cannot be paid")
            }
        }
    }

    /// `POST /internal/charges` (scope payments:charge): the checkout saga's charge for an order it has not created yet.
    /// The calling service vouches for the user and the amount; the Idempotency-Key header is required.
    @Sendable func chargeForService(request: Request, context: ServiceRequestContext) async throws -> Response {
        guard let key = try IdempotencyKey.header(of: request) else {
            throw APIError.validation([.init(field: "Idempotency-Key", message: "\"Idempotency-Key\" is required")])
        }
        var request = request
        let input = try PaymentInput(body: try await request.jsonBody(context: context), now: .now, forService: true)
        return try await charge(input, userId: input.userId ?? "", key: key, logger: context.logger, check: nil)
    }

    /// Charges `input` for `userId`: answers a repeated Idempotency-Key from its first result, runs `check` (the order's
    /// checks), records the payment, asks the processor, and answers 200, 402 or 504.
    func charge(
        _ input: PaymentInput, userId: String, key: String?, logger: Logger, check: (@Sendable (Double) async throws -> Void)?
    ) async throws -> Response {
        var logger = logger
        logger[metadataKey: "orderId"] = .string(input.orderId)
        // A repeated Idempotency-Key is answered before anything else: its first answer stands, whatever happened since.
        var retried: PaymentRecord?
        if let key, let existing = try await repository.find(userId: userId, key: key) {
            guard existing.fingerprint == input.fingerprint else {
                throw APIError(.unprocessableContent, "This Idempotency-Key was used with a different request")
            }
            if let response = existing.response {
                logger.info("Repeated payment request answered from its first result", metadata: ["paymentId": "\(existing.payment.id)"])
                return Self.json(status: response.status, body: response.body, replayed: true)
            }
            guard existing.payment.status == "failed" else {
                throw Self.inProgress("A request with this Idempotency-Key is in progress")
            }
            retried = existing
        }

        try await check?(input.amount)

        let record: PaymentRecord
        if let retried {
            // A charge whose outcome was unknown, tried again under the same payment (and processor key).
            guard try await repository.retry(id: retried.payment.id) else {
                throw Self.inProgress("A request with this Idempotency-Key is in progress")
            }
            record = retried
        } else {
            let candidate = PaymentRecord(
                payment: PaymentDTO(
                    id: UUID().uuidString.lowercased(), orderId: input.orderId, amount: input.amount, status: "processing",
                    card: .init(brand: input.card.brand, last4: input.card.last4), createdAt: Timestamp.now()
                ),
                userId: userId, fingerprint: input.fingerprint, processorReference: nil, response: nil
            )
            switch try await repository.start(candidate, idempotencyKey: key) {
            case .started(let started):
                record = started
            case .existing:
                // The same key arrived twice at once; the other request is charging.
                throw Self.inProgress("A request with this Idempotency-Key is in progress")
            case .orderTaken(let status):
                if status == "processing" { throw Self.inProgress("A payment for this order is already in progress") }
                throw APIError(.conflict, "Order is already paid")
            }
        }

        // The processor's idempotency key is the payment's id: a retry of this payment charges at most once.
        let charge = ChargeRequest(
            idempotencyKey: record.payment.id, amountCents: Money.cents(record.payment.amount), card: input.card,
            metadata: ["orderId": record.payment.orderId, "paymentId": record.payment.id]
        )
        let outcome: ChargeOutcome
        do {
            outcome = try await withTimeout(processorTimeout) { try await processor.charge(charge) }
        } catch let refused as ProviderProcessor.Refused {
            // Nothing was charged, and repeating the same request will not help (a wrong key, a request it rejects).
            try await repository.fail(id: record.payment.id, failure: "\(refused)", checked: true)
            logger.error("Payment provider refused the charge", metadata: ["paymentId": "\(record.payment.id)", "error": "\(refused)"])
            throw APIError(
                .badGateway, "The payment provider refused the request; nothing was charged", extra: ["paymentId": .string(record.payment.id)])
        } catch {
            try await repository.fail(id: record.payment.id, failure: "processor did not answer: \(error)")
            logger.warning("Payment processor did not answer", metadata: ["paymentId": "\(record.payment.id)", "card": "\(input.card)"])
            throw APIError(
                .gatewayTimeout, "The payment processor did not answer in time; nothing was charged twice — retry with the same Idempotency-Key",
                extra: ["paymentId": .string(record.payment.id)]
            )
        }
        let answer = try await repository.settle(record, outcome: outcome)
        logger.info(
            answer.status == 200 ? "Payment completed" : "Payment declined", metadata: ["paymentId": "\(record.payment.id)", "card": "\(input.card)"]
        )
        return Self.json(status: answer.status, body: answer.body, replayed: false)
    }

    @Sendable func get(request: Request, context: ServiceRequestContext) async throws -> PaymentDTO {
        let id = try context.parameters.require("id")
        guard let record = try await repository.find(id: id) else { throw APIError.notFound("Payment not found") }
        guard try context.requireIdentity().canAccess(ownerID: record.userId) else { throw APIError.forbidden() }
        return record.payment
    }

    func fetchOrder(_ id: String) async throws -> OrderDTO {
        let response = try await orders.get("/internal/orders/\(id)")
        switch response.status {
        case 200: return try response.decode(OrderDTO.self)
        case 404: throw APIError.notFound("Order not found")
        default:
            // 401/403 here mean this service's own identity was refused: not the caller's fault.
            throw APIError(.badGateway, "Order service answered \(response.status)")
        }
    }

    static func json(status: Int, body: String, replayed: Bool) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if replayed { headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
