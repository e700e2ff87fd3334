import Foundation
import Logging
import NIOHTTP1
import PaymentService
import ServiceCore
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

/// The guide's order lifecycle through the gateway, in process: reservation, payment, fulfilment, notifications and
/// mail, and what happens when a step cannot be done.
@Suite struct OrderLifecycleTests {
    static let address = #""shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}"#

    static func orderBody(quantity: Int, product: String = "product-1", price: Double = 29.99) -> String {
        #"{"items":[{"productId":"\#(product)","quantity":\#(quantity),"price":\#(price)}],\#(address)}"#
    }

    static func paymentBody(
        orderId: String, amount: Double, number: String = "4111111111111111", month: Int = 12, year: Int = 2030, cvv: String = "123"
    )
        -> String
    {
        #"{"orderId":"\#(orderId)","amount":\#(amount),"paymentMethod":"credit_card","cardDetails":{"number":"\#(number)","expiryMonth":\#(month),"expiryYear":\#(year),"cvv":"\#(cvv)"}}"#
    }

    struct Listed: Codable, Sendable {
        var id: String
        var type: String
        var subject: String
    }

    /// Signs up and logs in a customer; answers its id and token.
    static func customer(_ shop: InProcessShop, email: String = "jane@example.com", name: String = "Jane Doe") async throws -> (
        id: String, token: String
    ) {
        let user = try await shop.call(.POST, "/api/users", json: #"{"email":"\#(email)","name":"\#(name)","password":"Secret123"}"#).json(
            UserDTO.self)
        let token = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"\#(email)","password":"Secret123"}"#).json(TokenResponse.self)
            .token
        return (user.id, token)
    }

    static func order(_ shop: InProcessShop, _ id: String, token: String) async throws -> OrderDTO {
        try await shop.call(.GET, "/api/orders/\(id)", token: token).json(OrderDTO.self)
    }

    static func product(_ shop: InProcessShop, _ id: String = "product-1") async throws -> ProductDTO {
        try await shop.call(.GET, "/api/inventory/\(id)").json(ProductDTO.self)
    }

    @Test(arguments: TestDatabase.available)
    func theGuidesFlowEndsShippedWithMailForEachStep(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await Self.customer(shop)
                let created = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 2), token: token)
                #expect(created.status == .created)
                let order = try created.json(OrderDTO.self)
                #expect(order.status == "pending")
                // order.created → the inventory holds the two units.
                try await eventually("the reservation") { try await Self.product(shop).reserved == 2 }

                let paid = try await shop.call(.POST, "/api/payments", json: Self.paymentBody(orderId: order.id, amount: 59.98), token: token)
                #expect(paid.status == .ok)
                let payment = try paid.json(PaymentDTO.self)
                #expect(payment.status == "completed")
                #expect(payment.card == PaymentDTO.Card(brand: "visa", last4: "1111"))
                #expect(!String(buffer: paid.body).contains("4111111111111111"))

                // payment.confirmed → paid → order.fulfillment.requested → shipped, eventually.
                try await eventually("the order to ship") { try await Self.order(shop, order.id, token: token).status == "shipped" }
                let shipped = try await Self.order(shop, order.id, token: token)
                #expect(shipped.trackingNumber?.hasPrefix("SHOP") == true)
                let stock = try await Self.product(shop)
                #expect(stock.stock == 98)
                #expect(stock.reserved == 0)

                // One notification per step, each also mailed as an .eml file to the customer's address.
                let kinds = ["order-confirmed", "payment-processed", "order-shipped"].map { "\($0)-\(order.id)" }
                try await eventually("three notifications") {
                    let page = try await shop.call(.GET, "/api/notifications", token: token).json(Paginated<Listed>.self)
                    return Set(page.results.map(\.id)) == Set(kinds)
                }
                // Mail goes out after each notification committed (from the service's mail queue).
                try await eventually("three mails") {
                    kinds.allSatisfy {
                        FileManager.default.fileExists(atPath: (harness.mailDirectory as NSString).appendingPathComponent("\($0).eml"))
                    }
                }
                for kind in kinds {
                    let path = (harness.mailDirectory as NSString).appendingPathComponent("\(kind).eml")
                    let mail = try String(contentsOfFile: path, encoding: .utf8)
                    #expect(mail.contains("To: \"Jane Doe\" <jane@example.com>\r\n"), "\(kind)")
                    #expect(mail.contains("\r\nSubject: "), "\(kind)")
                    #expect(mail.contains("\r\n\r\nHello Jane Doe,"), "\(kind)")
                    #expect(!mail.contains("4111111111111111"))
                }
                let shippedMail = try String(
                    contentsOfFile: (harness.mailDirectory as NSString).appendingPathComponent("order-shipped-\(order.id).eml"), encoding: .utf8)
                #expect(shippedMail.contains(shipped.trackingNumber ?? "missing"))
                #expect(harness.processor.approvedCharges == 1)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func badPaymentsAreRefusedAndLeaveTheOrderUnchanged(_ engine: TestDatabase) async throws {
        try await Harness.with(engine, processorTimeout: .milliseconds(300)) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await Self.customer(shop)
                let (_, otherToken) = try await Self.customer(shop, email: "max@example.com", name: "Max Other")
                let order = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 1), token: token).json(OrderDTO.self)
                func pay(_ body: String, token: String = token, key: String? = nil) async throws -> InProcessShop.Reply {
                    try await shop.call(.POST, "/api/payments", json: body, token: token, headers: key.map { [("Idempotency-Key", $0)] } ?? [])
                }
                func field(_ reply: InProcessShop.Reply) -> String? {
                    ((reply.object["details"] as? [[String: Any]])?.first?["field"]) as? String
                }

                let badLuhn = try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, number: "4111111111111112"))
                #expect(badLuhn.status == .badRequest)
                #expect(field(badLuhn) == "cardDetails.number")
                let expired = try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, month: 12, year: 2025))
                #expect(expired.status == .badRequest)
                #expect(field(expired) == "cardDetails.expiryYear")
                let wrongAmount = try await pay(Self.paymentBody(orderId: order.id, amount: 10))
                #expect(wrongAmount.status == .badRequest)
                #expect(field(wrongAmount) == "amount")
                let badCVV = try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, cvv: "12a"))
                #expect(badCVV.status == .badRequest)
                #expect(try await pay(Self.paymentBody(orderId: order.id, amount: 29.99), token: otherToken).status == .forbidden)
                #expect(try await pay(Self.paymentBody(orderId: "no-such-order", amount: 29.99)).status == .notFound)
                #expect(try await pay(#"{"orderId":5}"#).status == .badRequest)
                #expect(try await pay("not json").status == .badRequest)

                let declined = try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, number: SandboxProcessor.declined))
                #expect(declined.status.code == 402)
                #expect(declined.object["code"] as? String == "card_declined")
                let poor = try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, number: SandboxProcessor.insufficientFunds))
                #expect(poor.status.code == 402)
                #expect(poor.object["code"] as? String == "insufficient_funds")
                // The processor does not answer: 504, nothing charged; the retry with the same key is not charged twice.
                let slow = try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, number: SandboxProcessor.timesOut), key: "slow-1")
                #expect(slow.status == .gatewayTimeout)
                #expect(
                    try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, number: SandboxProcessor.timesOut), key: "slow-1").status
                        == .gatewayTimeout)
                #expect(harness.processor.approvedCharges == 0)
                #expect(try await Self.order(shop, order.id, token: token).status == "pending")

                // The same Idempotency-Key twice: one charge, the same answer; with another request: refused.
                let body = Self.paymentBody(orderId: order.id, amount: 29.99)
                let first = try await pay(body, key: "pay-1")
                let again = try await pay(body, key: "pay-1")
                #expect(first.status == .ok)
                #expect(again.status == .ok)
                #expect(try again.json(PaymentDTO.self) == first.json(PaymentDTO.self))
                #expect(again.headers.first(name: "idempotent-replayed") == "true")
                #expect(
                    try await pay(Self.paymentBody(orderId: order.id, amount: 29.99, number: "4242424242424242"), key: "pay-1").status.code == 422)
                #expect(harness.processor.approvedCharges == 1)
                // Paid already: another payment is refused, with or without a key.
                let twice = try await pay(body)
                #expect(twice.status == .conflict)
                #expect(twice.object["error"] as? String == "Order is already paid")
                #expect(harness.processor.approvedCharges == 1)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func anOrderWithoutStockIsCancelledAndCancellingReleasesTheStock(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await Self.customer(shop)
                // More than the 100 in stock: order.processing.failed → cancelled.
                let tooMany = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 101), token: token).json(OrderDTO.self)
                try await eventually("the cancellation") { try await Self.order(shop, tooMany.id, token: token).status == "cancelled" }
                #expect(try await Self.product(shop).reserved == 0)
                let late = try await shop.call(.POST, "/api/payments", json: Self.paymentBody(orderId: tooMany.id, amount: 3028.99), token: token)
                #expect(late.status == .conflict)

                // Cancelling a reserved order gives the stock back.
                let kept = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 3), token: token).json(OrderDTO.self)
                try await eventually("the reservation") { try await Self.product(shop).reserved == 3 }
                #expect(try await shop.call(.POST, "/api/orders/\(kept.id)/cancel", token: token).status == .ok)
                try await eventually("the release") { try await Self.product(shop).reserved == 0 }
                #expect(try await Self.product(shop).stock == 100)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func aCancelledOrdersPaymentIsRefundedOnce(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (userId, token) = try await Self.customer(shop)
                let order = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 1), token: token).json(OrderDTO.self)
                let payment = try await shop.call(.POST, "/api/payments", json: Self.paymentBody(orderId: order.id, amount: 29.99), token: token)
                    .json(PaymentDTO.self)
                // The order's cancellation, as the order service announces it (here: published straight into the log,
                // twice under two ids, as after a redelivery by a publisher that lost its first acknowledgement).
                let log = try await EventLog.open(url: harness.eventLogURL, dataDirectory: harness.dataDirectory, logger: Logger(label: "test"))
                let cancelled = OrderEvent(orderId: order.id, userId: userId, items: [], reason: "test")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let services = ServiceGroup(services: log.database.services, logger: Logger(label: "test"))
                    group.addTask { try await services.run() }
                    for _ in 0..<2 {
                        try await log.publish(
                            try EventEnvelope(type: EventType.orderCancelled, source: "test", partitionKey: order.id, payload: cancelled))
                    }
                    try await eventually("the refund") {
                        try await shop.call(.GET, "/api/payments/\(payment.id)", token: token).json(PaymentDTO.self).status == "refunded"
                    }
                    await services.triggerGracefulShutdown()
                }
                await log.database.close()
                #expect(harness.processor.refundedCents == 2999)
                let other = try await harness.keys.token("someone-else")
                #expect(try await shop.call(.GET, "/api/payments/\(payment.id)", token: other).status == .forbidden)
            }
        }
    }

    @Test func internalOrderReadsNeedAServiceTokenWithOrdersRead() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await Self.customer(shop)
                let order = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 1), token: token).json(OrderDTO.self)
                let url = try #require(shop.serviceURLs[.order]) + "/internal/orders/\(order.id)"
                for (what, intruder) in try await harness.keys.intruders(for: Scope.ordersRead) + [("the owner's own token", token)] {
                    let response = try await InProcessShop.call(shop.client, .GET, url, token: intruder)
                    #expect(response.status == (intruder == nil || what.contains("expired") ? .unauthorized : .forbidden), "\(what)")
                    #expect(!String(buffer: response.body).contains(order.id), "\(what)")
                }
                let service = try await harness.keys.token("payment", role: .service, scopes: [Scope.ordersRead])
                #expect(try await InProcessShop.call(shop.client, .GET, url, token: service).json(OrderDTO.self).id == order.id)
                // Not reachable through the gateway at all.
                #expect(try await shop.call(.GET, "/api/internal/orders/\(order.id)", token: service).status == .notFound)
                #expect(try await shop.call(.GET, "/api/orders/../internal/orders/\(order.id)", token: service).status == .badRequest)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func anUnpaidReservationExpiresAndItsOrderIsCancelled(_ engine: TestDatabase) async throws {
        // The reservation's clock moves only when the test moves it: fifteen minutes pass at once.
        try await Harness.with(engine, reservationTimeToLive: .seconds(900)) { harness in
            try await InProcessShop.with(harness) { shop in
                let clock = harness.reservationClock
                let (_, token) = try await Self.customer(shop)
                let order = try await shop.call(.POST, "/api/orders", json: Self.orderBody(quantity: 5), token: token).json(OrderDTO.self)
                try await eventually("the stock to be reserved") { try await Self.product(shop).reserved == 5 }
                // Exactly fifteen minutes later the reservation still holds: the sweep that woke and ran left it alone.
                try await clock.waitForSleepers()
                clock.advance(by: .seconds(900))
                try await clock.waitForSleepers()
                #expect(try await Self.product(shop).reserved == 5)
                #expect(try await Self.order(shop, order.id, token: token).status == "pending")
                // At the next sweep (a second later) it has expired: released, and the order service cancels the order.
                clock.advance(by: .seconds(1))
                try await clock.waitForSleepers()
                try await eventually("the expiry to cancel the order") { try await Self.order(shop, order.id, token: token).status == "cancelled" }
                let product = try await Self.product(shop)
                #expect(product.reserved == 0)
                #expect(product.stock == 100)
                let late = try await shop.call(.POST, "/api/payments", json: Self.paymentBody(orderId: order.id, amount: 149.95), token: token)
                #expect(late.status == .conflict)
                #expect(harness.processor.approvedCharges == 0)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func concurrentOrdersForTheLastItemsNeverOversell(_ engine: TestDatabase) async throws {
        let catalog = [("last-items", ProductUpdate(name: "Last Items", price: 10, stock: 5))]
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness, catalog: catalog) { shop in
                let (_, token) = try await Self.customer(shop)
                let ids = try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in 0..<12 {
                        group.addTask {
                            try await shop.call(
                                .POST, "/api/orders", json: Self.orderBody(quantity: 1, product: "last-items", price: 10), token: token
                            )
                            .json(OrderDTO.self).id
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
                // Every order is decided: five hold a unit, seven are cancelled.
                try await eventually("every order decided", timeout: .seconds(30)) {
                    let product = try await Self.product(shop, "last-items")
                    var cancelled = 0
                    for id in ids where try await Self.order(shop, id, token: token).status == "cancelled" { cancelled += 1 }
                    return product.reserved == 5 && cancelled == 7
                }
                let product = try await Self.product(shop, "last-items")
                #expect(product.stock == 5)
                #expect(product.reserved == 5)
            }
        }
    }
}
