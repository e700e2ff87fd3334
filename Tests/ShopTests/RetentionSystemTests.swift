import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// Retention across real processes: with a short `RETENTION`, what a burst of traffic leaves in the infrastructure
/// tables is pruned by the services themselves, while the business data stays.
@Suite(.serialized) struct RetentionSystemTests {
    static let checkoutBody =
        #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"},"paymentMethod":"card","cardDetails":{"number":"4242424242424242","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#

    @Test(arguments: TestDatabase.available)
    func aBurstOfTrafficLeavesNothingBehindInTheInfrastructureTables(_ engine: TestDatabase) async throws {
        _ = try await SystemTests.withSystem(engine, name: "retention", configure: { $0.retention = "2s" }) { system, _, client in
            let gateway = system.gatewayURL
            let token = try await ResilienceSystemTests.customer(gateway, client: client)
            var orders: [String] = []
            for n in 0..<4 {
                // One declined card among them: a compensated saga is pruned like a completed one.
                let body = n == 3 ? Self.checkoutBody.replacingOccurrences(of: "4242424242424242", with: "4000000000000002") : Self.checkoutBody
                let reply = try await InProcessShop.call(
                    client, .POST, gateway + "/api/checkout", json: body, token: token, headers: [("idempotency-key", "burst-\(n)")])
                #expect(reply.status == (n == 3 ? .paymentRequired : .created))
                if n < 3 { orders.append(try #require(try reply.json(CheckoutDTO.self).orderId)) }
            }
            let logger = Logger(label: "retention-test")
            let busy = try await InfrastructureTables.rows(of: system, logger: logger)
            #expect(busy["order.sagas"] == 4 && busy["order.checkouts"] == 4, "\(busy)")
            #expect((busy["eventlog.events"] ?? 0) > 0)

            // Every infrastructure table of every service is empty again once the traffic is past the retention.
            try await eventually("the infrastructure tables to be pruned", timeout: .seconds(60)) {
                let rows = try await InfrastructureTables.rows(of: system, logger: logger)
                return rows.values.allSatisfy { $0 == 0 }
            }
            // The business data stays: the orders (shipped by now), and the notifications of the customer.
            for order in orders {
                let reply = try await InProcessShop.call(client, .GET, gateway + "/api/orders/\(order)", token: token)
                #expect(reply.status == .ok)
            }
            let notifications = try await InProcessShop.call(client, .GET, gateway + "/api/notifications", token: token)
                .json(Paginated<OrderLifecycleTests.Listed>.self)
            #expect(notifications.pagination.total >= 6, "two or more mails per completed checkout")
            // What was pruned is counted where it happened.
            let metrics = try PrometheusText(String(buffer: try await InProcessShop.call(client, .GET, system.url(of: .order) + "/metrics").body))
            #expect(metrics.value("retention_pruned_rows_total", ["table": "sagas"]) == 4)
            #expect(metrics.value("retention_pruned_rows_total", ["table": "checkouts"]) == 4)
            #expect(metrics.value("retention_pruned_rows_total", ["table": "inbox"]) > 0)
            // A replay of a pruned checkout's key starts a new checkout (the key's lifetime is the retention).
            let replay = try await InProcessShop.call(
                client, .POST, gateway + "/api/checkout", json: Self.checkoutBody, token: token, headers: [("idempotency-key", "burst-0")])
            #expect(replay.status == .created)
            #expect(try replay.json(CheckoutDTO.self).orderId.map { !orders.contains($0) } == true)
        }
    }
}
