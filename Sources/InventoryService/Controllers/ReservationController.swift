import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ShopContracts

/// The checkout saga's stock steps (a service token with `inventory:reserve`): hold an order's stock before the order
/// exists, and release it as the saga's compensation. Both are idempotent by order id.
struct ReservationController {
    let reservations: Reservations
    let database: Database
    let verifier: TokenVerifier
    let cache: ProductCache

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("internal/reservations")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireServiceScope(Scope.inventoryReserve))
            .post(use: hold)
            .delete(":orderId", use: release)
    }

    struct Held: ResponseEncodable {
        var orderId: String
        var status: String
    }

    @Sendable func hold(request: Request, context: ServiceRequestContext) async throws -> EditedResponse<Held> {
        var request = request
        let input = try Validation.validate(try await request.jsonBody(context: context)) { body -> ReservationRequest? in
            body.allowOnly(["orderId", "items"])
            let orderId = body.string("orderId", maxLength: 64, rule: Rules.identifier)
            let items = body.objects("items", count: 1...100)?.map { item -> ReservationRequest.Line? in
                item.allowOnly(["productId", "quantity"])
                let productId = item.string("productId", maxLength: 64, rule: Rules.identifier)
                let quantity = item.integer("quantity", in: 1...1000)
                guard let productId, let quantity else { return nil }
                return ReservationRequest.Line(productId: productId, quantity: quantity)
            }
            guard let orderId, let items, items.allSatisfy({ $0 != nil }) else { return nil }
            return ReservationRequest(orderId: orderId, items: items.compactMap { $0 })
        }
        let lines = Reservations.quantities(input.items.map { OrderDTO.Item(productId: $0.productId, name: "", quantity: $0.quantity, price: 0) })
        do {
            try await database.transaction { sql in try await reservations.hold(orderId: input.orderId, lines: lines, in: sql) }
        } catch let shortage as Reservations.Shortage {
            throw APIError(.conflict, "Insufficient stock", extra: ["reason": .string(shortage.reason)])
        }
        await cache.forget(ids: lines.map(\.productId))
        return EditedResponse(status: .created, response: Held(orderId: input.orderId, status: "reserved"))
    }

    @Sendable func release(request: Request, context: ServiceRequestContext) async throws -> Held {
        let orderId = try context.parameters.require("orderId")
        // The same rule as the hold's `orderId`: an id no hold could have is a mistake, not "none held".
        if let problem = Rules.identifier(orderId) {
            throw APIError.validation([.init(field: "orderId", message: "\"orderId\" \(problem)")])
        }
        let released = try await database.transaction { sql in try await reservations.release(orderId: orderId, in: sql) }
        if released { await cache.forget(order: orderId, reservations: reservations, database: database) }
        return Held(orderId: orderId, status: released ? "released" : "none held")
    }
}
