import Foundation
import NIOHTTP1
import PaymentService
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing

/// `POST /api/checkout`: the guide's createOrderSaga through the gateway, in process.
@Suite struct CheckoutTests {
    static func body(quantity: Int = 1, product: String = "product-1", price: Double = 29.99, number: String = "4111111111111111") -> String {
        #"{"items":[{"productId":"\#(product)","quantity":\#(quantity),"price":\#(price)}],"# + OrderLifecycleTests.address
            + #","paymentMethod":"credit_card","cardDetails":{"number":"\#(number)","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
    }

    static func steps(_ shop: InProcessShop, _ id: String, token: String) async throws -> [String] {
        try await shop.call(.GET, "/api/checkout/\(id)", token: token).json(CheckoutDTO.self).steps?.map { "\($0.name) \($0.status)" } ?? []
    }

    @Test(arguments: TestDatabase.available)
    func aCheckoutReservesChargesCreatesAndShips(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop)
                let reply = try await shop.call(.POST, "/api/checkout", json: Self.body(quantity: 2), token: token)
                #expect(reply.status == .created, "\(String(buffer: reply.body))")
                let checkout = try reply.json(CheckoutDTO.self)
                #expect(checkout.status == "completed")
                let orderId = try #require(checkout.orderId)
                #expect(
                    try await Self.steps(shop, checkout.id, token: token) == [
                        "reserveInventory started", "reserveInventory completed", "chargePayment started", "chargePayment completed",
                        "createOrder started", "createOrder completed",
                    ])
                let order = try await OrderLifecycleTests.order(shop, orderId, token: token)
                #expect(order.totalAmount == 59.98)
                try await eventually("the order to ship") {
                    try await OrderLifecycleTests.order(shop, orderId, token: token).status == "shipped"
                }
                let product = try await OrderLifecycleTests.product(shop)
                #expect(product.stock == 98)
                #expect(product.reserved == 0)
                #expect(harness.processor.approvedCharges == 1)
                try await eventually("three notifications") {
                    let page = try await shop.call(.GET, "/api/notifications", token: token).json(Paginated<OrderLifecycleTests.Listed>.self)
                    return Set(page.results.map(\.type)) == ["ORDER_CONFIRMED", "PAYMENT_PROCESSED", "ORDER_SHIPPED"]
                }
                // Someone else cannot see it.
                let other = try await harness.keys.token("someone-else")
                #expect(try await shop.call(.GET, "/api/checkout/\(checkout.id)", token: other).status == .forbidden)
                #expect(try await shop.call(.GET, "/api/checkout/no-such-checkout", token: token).status == .notFound)
            }
        }
    }

    struct SagaSummary: Decodable {
        var id: String
        var status: String
    }

    /// A checkout whose charge hangs is answered 202 with where to follow it, well before the gateway's timeout; an admin
    /// sees it among the running sagas and cannot "retry" a saga that has not failed.
    @Test func aSlowChargeAnswers202WithItsLocationAndAnAdminSeesTheSaga() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop)
                let began = ContinuousClock.now
                let reply = try await shop.call(
                    .POST, "/api/checkout", json: Self.body(number: "4000000000000119"), token: token, headers: [("Idempotency-Key", "slow-1")]
                )
                #expect(reply.status == .accepted, "\(String(buffer: reply.body))")
                #expect(began.duration(to: .now) < .seconds(20), "answered after the checkout's wait, not the gateway's 30 s timeout")
                let checkout = try reply.json(CheckoutDTO.self)
                #expect(checkout.status == "running")
                let location = try #require(reply.headers.first(name: "location"))
                #expect(location == "/api/checkout/\(checkout.id)")
                #expect(reply.headers.first(name: "retry-after") != nil)
                #expect(try await shop.call(.GET, location, token: token).json(CheckoutDTO.self).id == checkout.id)
                // A replay of the key while it runs: the same checkout, still 202.
                let replay = try await shop.call(
                    .POST, "/api/checkout", json: Self.body(number: "4000000000000119"), token: token, headers: [("Idempotency-Key", "slow-1")]
                )
                #expect(try replay.status == .accepted && replay.json(CheckoutDTO.self).id == checkout.id)

                let admin = try await harness.keys.token("admin-1", role: .admin)
                let running = try await shop.call(.GET, "/api/admin/sagas?status=running", token: admin).json([SagaSummary].self)
                #expect(running.contains { $0.id == checkout.id && $0.status == "running" })
                #expect(try await shop.call(.POST, "/api/admin/sagas/\(checkout.id)/retry", token: admin).status == .conflict)
                #expect(try await shop.call(.GET, "/api/admin/sagas/\(checkout.id)", token: admin).status == .ok)
                #expect(try await shop.call(.GET, "/api/admin/sagas?status=weird", token: admin).status == .badRequest)
                #expect(try await shop.call(.GET, "/api/admin/sagas/no-such-saga", token: admin).status == .notFound)
                #expect(try await shop.call(.GET, "/api/admin/sagas", token: token).status == .forbidden)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func aFailingStepCompensatesWhatWasDoneAndAnswersItsStatus(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop)
                // Declined card: the reservation is released, nothing is charged, no order exists.
                let declined = try await shop.call(
                    .POST, "/api/checkout", json: Self.body(quantity: 3, number: SandboxProcessor.declined), token: token)
                #expect(declined.status.code == 402)
                #expect(declined.object["status"] as? String == "compensated")
                #expect(declined.object["error"] as? String == "The card was declined")
                let id = try #require(declined.object["id"] as? String)
                #expect(
                    try await Self.steps(shop, id, token: token) == [
                        "reserveInventory started", "reserveInventory completed", "chargePayment started", "chargePayment failed",
                        "chargePayment compensated", "reserveInventory compensated",
                    ])
                #expect(try await OrderLifecycleTests.product(shop).reserved == 0)

                // Not enough stock: the first step fails, nothing else runs.
                let tooMany = try await shop.call(.POST, "/api/checkout", json: Self.body(quantity: 101), token: token)
                #expect(tooMany.status == .conflict)
                #expect((tooMany.object["error"] as? String)?.contains("insufficient stock of product-1") == true)
                #expect(harness.processor.approvedCharges == 0)
                let orders = try await shop.call(.GET, "/api/orders", token: token).json(Paginated<OrderDTO>.self)
                #expect(orders.pagination.total == 0)

                // Bad input never starts a saga.
                let bad = try await shop.call(.POST, "/api/checkout", json: Self.body(number: "4111111111111112"), token: token)
                #expect(bad.status == .badRequest)
                #expect(try await shop.call(.POST, "/api/checkout", json: Self.body(price: 1.00), token: token).status == .conflict)
                #expect(try await shop.call(.POST, "/api/checkout", json: "{}", token: token).status == .badRequest)
                #expect(try await shop.call(.POST, "/api/checkout", json: Self.body()).status == .unauthorized)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func aHoldThatArrivesAfterItsReleaseIsRefused(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let inventory = try #require(shop.serviceURLs[.inventory])
                let service = try await harness.keys.token("order", role: .service, scopes: [Scope.inventoryReserve])
                let hold = #"{"orderId":"late-1","items":[{"productId":"product-1","quantity":2}]}"#
                // The saga's compensation ran first (its hold timed out on the way) ...
                let released = try await InProcessShop.call(shop.client, .DELETE, inventory + "/internal/reservations/late-1", token: service)
                #expect(released.status == .ok)
                // ... so the hold that arrives afterwards keeps nothing.
                let late = try await InProcessShop.call(shop.client, .POST, inventory + "/internal/reservations", json: hold, token: service)
                #expect(late.status == .conflict)
                #expect(try await OrderLifecycleTests.product(shop).reserved == 0)
                // A hold, then its release, gives the units back once however often it is released.
                let other = #"{"orderId":"held-1","items":[{"productId":"product-1","quantity":3}]}"#
                #expect(
                    try await InProcessShop.call(shop.client, .POST, inventory + "/internal/reservations", json: other, token: service).status
                        == .created)
                #expect(try await OrderLifecycleTests.product(shop).reserved == 3)
                for _ in 0..<2 {
                    _ = try await InProcessShop.call(shop.client, .DELETE, inventory + "/internal/reservations/held-1", token: service)
                }
                #expect(try await OrderLifecycleTests.product(shop).reserved == 0)
                // An id no hold could have is a 400 (it was answered "none held").
                for bad in [String(repeating: "a", count: 65), "a$b"] {
                    let refused = try await InProcessShop.call(shop.client, .DELETE, inventory + "/internal/reservations/\(bad)", token: service)
                    #expect(refused.status == .badRequest, "\(bad)")
                    #expect((refused.object["details"] as? [[String: Any]])?.first?["field"] as? String == "orderId", "\(bad)")
                }
                // Without the scope: refused.
                let user = try await harness.keys.token("u1")
                #expect(
                    try await InProcessShop.call(shop.client, .POST, inventory + "/internal/reservations", json: other, token: user).status
                        == .forbidden)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func theSameIdempotencyKeyChecksOutOnce(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop)
                let replies = try await withThrowingTaskGroup(of: InProcessShop.Reply.self) { group in
                    for _ in 0..<3 {
                        group.addTask {
                            try await shop.call(.POST, "/api/checkout", json: Self.body(), token: token, headers: [("Idempotency-Key", "cart-1")])
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let ids = Set(replies.compactMap { $0.object["id"] as? String })
                #expect(ids.count == 1)
                try await eventually("the checkout to complete") {
                    try await shop.call(.GET, "/api/checkout/\(ids.first ?? "")", token: token).json(CheckoutDTO.self).status == "completed"
                }
                #expect(harness.processor.approvedCharges == 1)
                // The same key with another request (two units, another card) is refused and starts nothing; with the
                // first request again it still answers the first checkout.
                for other in [Self.body(quantity: 2), Self.body(number: "5555555555554444")] {
                    let reused = try await shop.call(.POST, "/api/checkout", json: other, token: token, headers: [("Idempotency-Key", "cart-1")])
                    #expect(reused.status == .unprocessableEntity)
                    #expect(reused.object["error"] as? String == "This Idempotency-Key was used with a different request")
                }
                let replayed = try await shop.call(.POST, "/api/checkout", json: Self.body(), token: token, headers: [("Idempotency-Key", "cart-1")])
                #expect(replayed.status == .created && replayed.object["id"] as? String == ids.first)
                #expect(harness.processor.approvedCharges == 1)
                let orders = try await shop.call(.GET, "/api/orders", token: token).json(Paginated<OrderDTO>.self)
                #expect(orders.pagination.total == 1)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func simultaneousCheckoutsForTheLastItemsNeverOversell(_ engine: TestDatabase) async throws {
        let catalog = [("last-items", ProductUpdate(name: "Last Items", price: 10, stock: 5))]
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness, catalog: catalog) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop)
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<12 {
                        group.addTask {
                            Int(
                                try await shop.call(.POST, "/api/checkout", json: Self.body(product: "last-items", price: 10), token: token).status
                                    .code)
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == 201 }.count == 5, "\(statuses)")
                #expect(statuses.filter { $0 == 409 }.count == 7, "\(statuses)")
                #expect(harness.processor.approvedCharges == 5)
                try await eventually("the five to ship", timeout: .seconds(30)) {
                    let product = try await OrderLifecycleTests.product(shop, "last-items")
                    return product.stock == 0 && product.reserved == 0
                }
            }
        }
    }
}
