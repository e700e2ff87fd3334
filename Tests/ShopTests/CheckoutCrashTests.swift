import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOHTTP1
import SQLKit
import ServiceDatabase
import ServiceLifecycle
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// Checkouts across real processes while the orchestrating order service is killed (SIGKILL) and restarted by the
/// supervisor: every checkout ends completed or fully compensated, no order is paid twice, no money is kept without an
/// order, and stock equals what it was minus what shipped.
@Suite(.serialized) struct CheckoutCrashTests {
    @Test(arguments: TestDatabase.available)
    func checkoutsEndCompletedOrCompensatedThroughKillsOfTheOrchestrator(_ engine: TestDatabase) async throws {
        // Short leases and timeouts, so sagas left by a killed process are resumed within the test's time.
        let environment = [
            "SAGA_LEASE_MS": "1500", "PAYMENT_PROCESSOR_TIMEOUT_MS": "1500", "CHECKOUT_CHARGE_TIMEOUT_MS": "3000", "CHECKOUT_WAIT_MS": "100",
            // The cards that make the provider hang give up (and compensate) after this, not after the default minute.
            "CHECKOUT_DEADLINE_MS": "8000",
        ]
        _ = try await SystemTests.withSystem(
            engine, name: "crash", extraEnvironment: environment,
            configure: {
                // Its clients retry hard while the order service is down: not a test of the rate limit.
                $0.rateLimit = "off"
            }
        ) { system, supervisor, client in
            try await run(system: system, supervisor: supervisor, client: client)
        }
    }

    func run(system: LocalSystem, supervisor: Supervisor, client: HTTPClient) async throws {
        let gateway = system.gatewayURL
        _ = try await InProcessShop.call(
            client, .POST, gateway + "/api/users", json: #"{"email":"crash@example.com","name":"Crash Test","password":"Secret123"}"#)
        let token = try await InProcessShop.call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"crash@example.com","password":"Secret123"}"#
        )
        .json(TokenResponse.self).token
        // Twelve checkouts of 1–3 units; some cards time out at the processor (their sagas are in flight longest), one is
        // declined.
        let cards = (0..<12).map { $0 % 4 == 1 ? "4000000000000119" : ($0 == 6 ? "4000000000000002" : "4242424242424242") }
        let quantities = (0..<12).map { $0 % 3 + 1 }
        let ids = NIOLockedValueBox<[Int: String]>([:])

        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<12 {
                group.addTask {
                    let body =
                        #"{"items":[{"productId":"product-1","quantity":\#(quantities[index]),"price":29.99}],"# + OrderLifecycleTests.address
                        + #","paymentMethod":"card","cardDetails":{"number":"\#(cards[index])","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
                    try await Task.sleep(for: .milliseconds(150 * index))
                    // Retried with the same key until the order service answers (it may be down right now).
                    let deadline = ContinuousClock.now + .seconds(60)
                    while ContinuousClock.now < deadline {
                        if let reply = try? await InProcessShop.call(
                            client, .POST, gateway + "/api/checkout", json: body, token: token, headers: [("Idempotency-Key", "crash-\(index)")]
                        ), let id = reply.object["id"] as? String {
                            ids.withLockedValue { $0[index] = id }
                            return
                        }
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
            }
            // Kill the orchestrator twice, at random moments while checkouts run.
            group.addTask {
                for pause in [Duration.milliseconds(Int.random(in: 200...700)), .milliseconds(Int.random(in: 600...1400))] {
                    try await Task.sleep(for: pause)
                    guard let pid = supervisor.processIdentifier(of: .order) else { continue }
                    let restarts = supervisor.restartCount(of: .order)
                    kill(pid, SIGKILL)
                    let deadline = ContinuousClock.now + .seconds(30)
                    while supervisor.restartCount(of: .order) == restarts, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(supervisor.restartCount(of: .order) >= 2)
        let started = ids.withLockedValue { $0 }
        #expect(started.count == 12)

        // Every checkout finishes, completed or compensated — none is left for an operator.
        var outcomes: [Int: CheckoutDTO] = [:]
        let deadline = ContinuousClock.now + .seconds(90)
        for (index, id) in started {
            while true {
                let reply = try? await InProcessShop.call(client, .GET, gateway + "/api/checkout/\(id)", token: token)
                if let checkout = try? reply?.json(CheckoutDTO.self), ["completed", "compensated", "failed"].contains(checkout.status) {
                    outcomes[index] = checkout
                    break
                }
                guard ContinuousClock.now < deadline else {
                    Issue.record("checkout \(index) did not finish")
                    return
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        for (index, outcome) in outcomes {
            #expect(outcome.status != "failed", "\(index): \(outcome)")
            if cards[index] != "4242424242424242" { #expect(outcome.status == "compensated", "\(index): \(outcome)") }
        }
        // Some sagas were cut off by a kill and finished by the restarted process.
        let orderLog = (try? String(contentsOfFile: system.dataDirectory + "/logs/order.log", encoding: .utf8)) ?? ""
        #expect(orderLog.contains("Resuming saga"))
        let completed = outcomes.filter { $0.value.status == "completed" }
        let orderIds = Set(completed.compactMap(\.value.orderId))
        #expect(orderIds.count == completed.count)

        // Completed ones ship; stock is what it was minus what shipped, nothing stays reserved.
        let shippedUnits = completed.keys.map { quantities[$0] }.reduce(0, +)
        try await eventually("the stock to settle", timeout: .seconds(30)) {
            let product = try await InProcessShop.call(client, .GET, gateway + "/api/inventory/product-1").json(ProductDTO.self)
            return product.stock == 100 - shippedUnits && product.reserved == 0
        }

        // Money: per order at most one payment kept, and every kept payment belongs to a completed checkout's order.
        let payments = try await Database.open(
            try DatabaseConfiguration(url: system.databaseURL, service: "payment", dataDirectory: system.dataDirectory),
            logger: Logger(label: "check")
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            let services = ServiceGroup(services: payments.services, logger: Logger(label: "check"))
            group.addTask { try await services.run() }
            let kept = try await payments.withConnection { sql in
                try await sql.raw("SELECT order_id FROM payments WHERE status = 'completed'").all().map {
                    try $0.decode(column: "order_id", as: String.self)
                }
            }
            #expect(kept.count == Set(kept).count, "an order was paid twice")
            #expect(Set(kept) == orderIds, "kept: \(kept.count), completed orders: \(orderIds.count)")
            await services.triggerGracefulShutdown()
            await payments.close()
        }
    }
}
