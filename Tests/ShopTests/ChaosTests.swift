import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// The system under fire: concurrent checkouts while random service processes (the payment service among them) are
/// killed with SIGKILL every two seconds and restarted by the supervisor. Afterwards every checkout is completed or
/// compensated (none left for an operator), stock agrees with what shipped, and the payment provider's ledger agrees:
/// money kept for exactly the completed orders, for exactly their totals, and given back for every other charge.
@Suite(.serialized) struct ChaosTests {
    /// Seconds of killing (`CHAOS_SECONDS`, default 60).
    static let seconds = Int(ProcessInfo.processInfo.environment["CHAOS_SECONDS"] ?? "") ?? 60

    struct Started: Sendable {
        var id: String
        var quantity: Int
        var declined: Bool
    }

    struct Charge: Decodable {
        var id: String
        var amount: Int64
        var amount_refunded: Int64
        var status: String
        var metadata: [String: String]
    }

    struct Charges: Decodable {
        var data: [Charge]
        var has_more: Bool
    }

    @Test func checkoutsEndCompletedOrCompensatedWhileRandomProcessesAreKilled() async throws {
        let environment = [
            "SAGA_LEASE_MS": "1500", "PAYMENT_PROCESSOR_TIMEOUT_MS": "1500", "CHECKOUT_CHARGE_TIMEOUT_MS": "3000", "CHECKOUT_WAIT_MS": "100",
            "CHECKOUT_DEADLINE_MS": "30000", "PAYMENT_RECONCILE_INTERVAL_MS": "1000",
        ]
        _ = try await SystemTests.withSystem(.sqlite, name: "chaos", extraEnvironment: environment, configure: { $0.rateLimit = "off" }) {
            system, supervisor, client in
            try await run(system: system, supervisor: supervisor, client: client)
        }
    }

    func run(system: LocalSystem, supervisor: Supervisor, client: HTTPClient) async throws {
        let gateway = system.gatewayURL
        let admin = try await InProcessShop.call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"admin@shop.local","password":"AdminPass1"}"#
        )
        .json(TokenResponse.self).token
        let stock = 1000
        let created = try await InProcessShop.call(
            client, .PUT, gateway + "/api/inventory/chaos-1", json: #"{"name":"Chaos","price":10,"stock":\#(stock)}"#, token: admin)
        try #require(created.status == .created)
        _ = try await InProcessShop.call(
            client, .POST, gateway + "/api/users", json: #"{"email":"chaos@example.com","name":"Chaos Test","password":"Secret123"}"#)
        let token = try await InProcessShop.call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"chaos@example.com","password":"Secret123"}"#
        )
        .json(TokenResponse.self).token

        let started = NIOLockedValueBox<[Started]>([])
        let next = NIOLockedValueBox(0)
        let end = ContinuousClock.now + .seconds(Self.seconds)
        let victims: [ServiceName] = [.order, .payment, .inventory, .user, .auth, .notification]
        let kills = NIOLockedValueBox<[ServiceName: Int]>([:])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    while ContinuousClock.now < end {
                        let n = next.withLockedValue { value in
                            defer { value += 1 }; return value
                        }
                        let quantity = n % 3 + 1
                        let declined = n % 10 == 7
                        let card = declined ? "4000000000000002" : "4242424242424242"
                        let body =
                            #"{"items":[{"productId":"chaos-1","quantity":\#(quantity),"price":10}],"# + OrderLifecycleTests.address
                            + #","paymentMethod":"card","cardDetails":{"number":"\#(card)","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
                        // The same key until some service answers with the checkout's id (the path may be down right now).
                        let deadline = ContinuousClock.now + .seconds(60)
                        while ContinuousClock.now < deadline {
                            if let reply = try? await InProcessShop.call(
                                client, .POST, gateway + "/api/checkout", json: body, token: token, headers: [("Idempotency-Key", "chaos-\(n)")]
                            ), let id = reply.object["id"] as? String {
                                started.withLockedValue { $0.append(Started(id: id, quantity: quantity, declined: declined)) }
                                break
                            }
                            try await Task.sleep(for: .milliseconds(200))
                        }
                        try await Task.sleep(for: .milliseconds(150))
                    }
                }
            }
            group.addTask {
                while ContinuousClock.now < end {
                    try await Task.sleep(for: .seconds(2))
                    let victim = victims.randomElement()!
                    guard let pid = supervisor.processIdentifier(of: victim) else { continue }
                    kill(pid, SIGKILL)
                    kills.withLockedValue { $0[victim, default: 0] += 1 }
                }
            }
            try await group.waitForAll()
        }
        let checkouts = started.withLockedValue { $0 }
        #expect(kills.withLockedValue { $0[.payment] ?? 0 } >= 1 || kills.withLockedValue { $0.values.reduce(0, +) } >= Self.seconds / 2 - 1)
        #expect(checkouts.count >= 10, "only \(checkouts.count) checkouts got through")

        // Every checkout finishes, completed or compensated — none is left for an operator.
        var outcomes: [(Started, CheckoutDTO)] = []
        let deadline = ContinuousClock.now + .seconds(120)
        for checkout in checkouts {
            while true {
                let reply = try? await InProcessShop.call(client, .GET, gateway + "/api/checkout/\(checkout.id)", token: token)
                if let dto = try? reply?.json(CheckoutDTO.self), ["completed", "compensated", "failed"].contains(dto.status) {
                    outcomes.append((checkout, dto))
                    break
                }
                guard ContinuousClock.now < deadline else {
                    Issue.record("checkout \(checkout.id) did not finish")
                    return
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(outcomes.allSatisfy { $0.1.status != "failed" }, "\(outcomes.filter { $0.1.status == "failed" }.map(\.1))")
        #expect(outcomes.filter { $0.0.declined }.allSatisfy { $0.1.status == "compensated" })
        let completed = outcomes.filter { $0.1.status == "completed" }
        #expect(!completed.isEmpty)
        var totals: [String: Int64] = [:]
        for (checkout, dto) in completed { totals[try #require(dto.orderId)] = Int64(checkout.quantity) * 1000 }

        // Stock: what it was minus what the completed orders took, nothing held once they shipped.
        let taken = completed.map(\.0.quantity).reduce(0, +)
        try await eventually("the stock to settle", timeout: .seconds(60)) {
            let product = try await InProcessShop.call(client, .GET, gateway + "/api/inventory/chaos-1").json(ProductDTO.self)
            return product.stock == stock - taken && product.reserved == 0
        }

        // The provider's ledger: money kept per order is that order's total for completed checkouts, nothing otherwise.
        let key = try #require(PaymentProviderKey.read(dataDirectory: system.dataDirectory))
        let provider = system.url(of: .paymentProvider)
        let expected = totals
        try await eventually("the ledger to agree with the orders", timeout: .seconds(60)) {
            var kept: [String: Int64] = [:]
            var after: String?
            repeat {
                let page = try await InProcessShop.call(
                    client, .GET, provider + "/v1/charges?limit=100" + (after.map { "&starting_after=\($0)" } ?? ""), token: key
                )
                .json(Charges.self)
                for charge in page.data where charge.status == "succeeded" {
                    kept[charge.metadata["orderId"] ?? "?", default: 0] += charge.amount - charge.amount_refunded
                }
                after = page.has_more ? page.data.last?.id : nil
            } while after != nil
            return kept.filter { $0.value != 0 } == expected
        }
    }
}
