import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import SQLKit
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceSaga
import ShopContracts

/// `POST /checkout` runs the checkout saga (with an optional Idempotency-Key); `GET /checkout/:id` shows it.
struct CheckoutController {
    let orchestrator: SagaOrchestrator<CheckoutState>
    let pricing: CatalogPricing
    let vault: CardVault
    let database: Database
    let verifier: TokenVerifier
    /// How long `POST /checkout` waits for the saga before answering 202.
    let wait: Duration
    let logger: Logger

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("checkout")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireUser())
            .post(use: checkout)
            .get(":id", use: get)
    }

    struct Input: Sendable {
        var order: NewOrder
        var card: CardDetails

        /// What identifies the request behind an Idempotency-Key: the lines as sent, the address and the card (its brand,
        /// last four digits and expiry: never the number itself), hashed.
        var fingerprint: String {
            let lines = order.items.map { "\($0.productId)*\($0.quantity)@\(Money.cents($0.price))" }.joined(separator: ",")
            let address = order.shippingAddress
            let text = [
                lines, address.street, address.city, address.country, address.zipCode, card.brand, card.last4,
                "\(card.expiryMonth)/\(card.expiryYear)",
            ].map { "\($0.utf8.count):\($0)" }.joined()
            return SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
        }
    }

    @Sendable func checkout(request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let key = try IdempotencyKey.header(of: request)
        var request = request
        let input = try Validation.validate(try await request.jsonBody(context: context)) { body -> Input? in
            body.allowOnly(["items", "shippingAddress", "paymentMethod", "cardDetails"])
            let order = NewOrder.read(from: body)
            let card = CardDetails.read(from: body, now: .now)
            guard let order, let card else { return nil }
            return Input(order: order, card: card)
        }
        // A repeated key answers with the checkout it started, if it comes with the same request.
        let fingerprint = input.fingerprint
        if let key, let existing = try await checkout(userId: identity.subject, key: key) {
            try Self.requireSameRequest(existing, fingerprint)
            return try await answer(existing.sagaID, userId: identity.subject, waited: true)
        }
        // Stopping: a new checkout would be left to a restart that no longer has its card.
        guard orchestrator.isAccepting else { throw Self.restarting }
        let items = try await pricing.items(for: input.order.items)
        let sagaID = UUID().uuidString.lowercased()
        let state = CheckoutState(
            orderId: UUID().uuidString.lowercased(), userId: identity.subject, items: items, shippingAddress: input.order.shippingAddress,
            totalCents: items.reduce(Int64(0)) { $0 + Money.cents($1.price) * Int64($1.quantity) }
        )
        vault.put(input.card, for: sagaID)
        // The key (if any) and the saga are stored in one transaction: a key never points at a saga that is not there.
        let userId = identity.subject
        let started = try await orchestrator.start(id: sagaID, state: state) { sql in
            guard let key else { return true }
            return try await !sql.raw(
                """
                INSERT INTO checkouts (user_id, idempotency_key, saga_id, fingerprint)
                VALUES (\(bind: userId), \(bind: key), \(bind: sagaID), \(bind: fingerprint))
                ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING saga_id
                """
            ).all().isEmpty
        }
        guard started else {
            vault.remove(sagaID)
            // Another request with this key got there first.
            guard let key, let winner = try await self.checkout(userId: userId, key: key) else {
                throw APIError(.conflict, "A checkout with this Idempotency-Key is being started")
            }
            try Self.requireSameRequest(winner, fingerprint)
            return try await answer(winner.sagaID, userId: userId, waited: true)
        }
        context.logger.info("Checkout started", metadata: ["sagaId": "\(sagaID)", "orderId": "\(state.orderId)", "card": "\(input.card)"])
        // The orchestrator runs the saga (a client that hangs up does not stop it); the answer waits a little for it, and
        // is 202 with the checkout's Location when it is not done by then.
        let run: SagaOrchestrator<CheckoutState>.Run
        do {
            run = try orchestrator.submit(id: sagaID)
        } catch {
            // Stopping: nothing has run, so nothing is left behind — a retry with the same key starts afresh.
            vault.remove(sagaID)
            try? await orchestrator.discard(id: sagaID) { sql in
                try await sql.raw("DELETE FROM checkouts WHERE saga_id = \(bind: sagaID)").run()
            }
            throw Self.restarting
        }
        let finished = await run.wait(upTo: wait)
        return try await answer(sagaID, userId: identity.subject, waited: finished)
    }

    /// The order service is stopping: 503 with `Retry-After`, so the client tries again (another instance, or this one
    /// once restarted).
    static let restarting = APIError(.serviceUnavailable, "The service is restarting; try again shortly", headers: [.retryAfter: "2"])

    @Sendable func get(request: Request, context: ServiceRequestContext) async throws -> CheckoutDTO {
        let id = try context.parameters.require("id")
        guard let record = try await orchestrator.record(id: id) else { throw APIError.notFound("Checkout not found") }
        guard try context.requireIdentity().canAccess(ownerID: record.state.userId) else { throw APIError.forbidden() }
        return Self.dto(record, withSteps: true)
    }

    /// The answer to `POST /checkout`, the same for a replay of its Idempotency-Key: 201 completed; 202 with `Location`
    /// while it runs; when it ended without an order, a final 4xx — the failing step's own (402 for a declined card, 409
    /// for stock), or 409 when a step gave up on a service that stayed unavailable (nothing was charged: start a new
    /// checkout) or when it needs an operator (`failed`). Never a 5xx for a finished checkout: nothing changes by
    /// repeating it.
    func answer(_ sagaID: String, userId: String, waited: Bool) async throws -> Response {
        guard let record = try await orchestrator.record(id: sagaID) else { throw APIError.notFound("Checkout not found") }
        guard record.state.userId == userId else { throw APIError.forbidden() }
        let dto = Self.dto(record, withSteps: false)
        let status: HTTPResponse.Status
        switch record.status {
        case .completed: status = .created
        case .compensated: status = (400..<500).contains(record.errorStatus ?? 0) ? .init(code: record.errorStatus!) : .conflict
        case .failed: status = .conflict
        case .running, .compensating: status = .accepted
        }
        // The checkout's public address (through the gateway), for the client to follow.
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .location: "/checkout/\(sagaID)"]
        if !waited { headers[.retryAfter] = "1" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(dto))))
    }

    static func dto(_ record: SagaRecord<CheckoutState>, withSteps: Bool) -> CheckoutDTO {
        CheckoutDTO(
            id: record.id,
            status: record.status.rawValue,
            orderId: record.status == .completed ? record.state.orderId : nil,
            error: record.status == .completed ? nil : record.error,
            steps: withSteps ? record.history.map { CheckoutDTO.Step(name: $0.name, status: $0.status, at: $0.at, error: $0.error) } : nil
        )
    }

    /// Removes the idempotency records of checkouts whose sagas are being pruned (in the pruning transaction `sql`);
    /// answers how many.
    static let removeRecords: @Sendable ([String], any SQLDatabase) async throws -> Int = { sagaIDs, sql in
        try await sql.raw("DELETE FROM checkouts WHERE saga_id IN (\(binds: sagaIDs)) RETURNING saga_id").all().count
    }

    /// The checkout a user's Idempotency-Key started: its saga, and what the request was (nil for keys stored before
    /// fingerprints were).
    func checkout(userId: String, key: String) async throws -> (sagaID: String, fingerprint: String?)? {
        try await database.withConnection { sql in
            guard
                let row = try await sql.raw(
                    "SELECT saga_id, fingerprint FROM checkouts WHERE user_id = \(bind: userId) AND idempotency_key = \(bind: key)"
                ).first()
            else { return nil }
            return (try row.decode(column: "saga_id", as: String.self), try row.decode(column: "fingerprint", as: String?.self))
        }
    }

    /// A key reused with another request is refused (422), as the payment service does: answering the first checkout
    /// would tell the client its second order was placed.
    static func requireSameRequest(_ existing: (sagaID: String, fingerprint: String?), _ fingerprint: String) throws {
        guard existing.fingerprint == nil || existing.fingerprint == fingerprint else {
            throw APIError(.unprocessableContent, "This Idempotency-Key was used with a different request")
        }
    }
}
