import Foundation
import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ShopContracts

/// Order routes; every one needs a caller, and a caller sees only its own orders (admins see all).
struct OrderController<Repository: OrderRepository> {
    let repository: Repository
    let pricing: CatalogPricing
    let verifier: TokenVerifier
    /// The payment service, behind a circuit breaker, for the payment-status view.
    let payments: ServiceClient

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("orders")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireUser())
            .post(use: create)
            .get(use: list)
            .get("user/:userId", use: listForUser)
            .get(":id", use: get)
            .get(":id/payment", use: paymentStatus)
            .post(":id/cancel", use: cancel)
        // For other services (the payment service checks the order it charges): a service token with orders:read.
        router.group("internal/orders")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireServiceScope(Scope.ordersRead))
            .get(":id", use: getForService)
    }

    @Sendable func getForService(request: Request, context: ServiceRequestContext) async throws -> OrderDTO {
        let id = try context.parameters.require("id")
        guard let order = try await repository.find(id: id) else { throw APIError.notFound("Order not found") }
        return order
    }

    @Sendable func create(request: Request, context: ServiceRequestContext) async throws -> EditedResponse<OrderDTO> {
        let identity = try context.requireIdentity()
        var request = request
        let input = try NewOrder(body: try await request.jsonBody(context: context))
        let items = try await pricing.items(for: input.items)
        let totalCents = items.reduce(Int64(0)) { $0 + Money.cents($1.price) * Int64($1.quantity) }
        let now = Timestamp.now()
        let order = OrderDTO(
            id: UUID().uuidString.lowercased(),
            userId: identity.subject,
            status: OrderStatus.pending.rawValue,
            items: items,
            shippingAddress: input.shippingAddress,
            totalAmount: Money.amount(totalCents),
            createdAt: now,
            updatedAt: now
        )
        try await repository.create(order)
        context.logger.info("Order created", metadata: ["orderId": "\(order.id)", "userId": "\(order.userId)"])
        // Read back, so the answer has the same shape as every later read (with the customer from the replica).
        let stored = try await repository.find(id: order.id) ?? order
        return EditedResponse(status: .created, headers: [.location: "/orders/\(order.id)"], response: stored)
    }

    @Sendable func get(request: Request, context: ServiceRequestContext) async throws -> OrderDTO {
        try await ownedOrder(context: context)
    }

    @Sendable func list(request: Request, context: ServiceRequestContext) async throws -> Paginated<OrderDTO> {
        let identity = try context.requireIdentity()
        let page = try PageRequest(request: request)
        let (orders, total) = try await repository.list(userId: identity.subject, page: page)
        return Paginated(results: orders, request: page, total: total)
    }

    /// The user service's call for `{user, orders}`: the user's latest 100 orders.
    @Sendable func listForUser(request: Request, context: ServiceRequestContext) async throws -> [OrderDTO] {
        let userId = try context.parameters.require("userId")
        guard try context.requireIdentity().canAccess(ownerID: userId) else { throw APIError.forbidden() }
        return try await repository.list(userId: userId, page: PageRequest(page: 1, limit: 100)).orders
    }

    @Sendable func cancel(request: Request, context: ServiceRequestContext) async throws -> OrderDTO {
        let order = try await ownedOrder(context: context)
        do {
            guard
                let cancelled = try await repository.transition(
                    id: order.id, to: .cancelled, at: Timestamp.now(), reason: "cancelled by the customer")
            else {
                throw APIError.notFound("Order not found")
            }
            return cancelled
        } catch OrderRepositoryError.illegalTransition(let from, _) {
            throw APIError(.conflict, "An order that is \(from.rawValue) cannot be cancelled")
        }
    }

    /// `GET /orders/:id/payment`: the order's payment as the payment service knows it. While the payment service is
    /// unavailable (unreachable, failing, or its circuit breaker open so it is not even asked) the answer is the guide's
    /// fallback, `{status: "pending", message: "Payment will be processed later"}`, marked `source: "fallback"`.
    @Sendable func paymentStatus(request: Request, context: ServiceRequestContext) async throws -> PaymentStatusDTO {
        let order = try await ownedOrder(context: context)
        let fallback = PaymentStatusDTO(
            orderId: order.id, status: "pending", source: "fallback", message: "Payment will be processed later",
            breaker: payments.policies.breaker?.state
        )
        let response: ServiceClient.Response
        do {
            response = try await payments.get("/internal/payments?orderId=\(order.id)")
        } catch let error as APIError where error.status == .serviceUnavailable {
            context.logger.warning(
                "Payment service unavailable; answering the fallback", metadata: ["orderId": "\(order.id)", "error": "\(error.message)"])
            var answer = fallback
            answer.breaker = payments.policies.breaker?.state
            return answer
        }
        guard response.isSuccess else {
            context.logger.warning(
                "Payment service failed; answering the fallback", metadata: ["orderId": "\(order.id)", "status": "\(response.status)"])
            var answer = fallback
            answer.breaker = payments.policies.breaker?.state
            return answer
        }
        var status = try response.decode(PaymentStatusDTO.self)
        status.breaker = payments.policies.breaker?.state
        return status
    }

    private func ownedOrder(context: ServiceRequestContext) async throws -> OrderDTO {
        let id = try context.parameters.require("id")
        let identity = try context.requireIdentity()
        guard let order = try await repository.find(id: id) else { throw APIError.notFound("Order not found") }
        guard identity.canAccess(ownerID: order.userId) else { throw APIError.forbidden() }
        return order
    }
}
