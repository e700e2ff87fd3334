import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing

@testable import GatewayService

@Suite struct GatewayTests {
    static let signup = #"{"email":"jane@example.com","name":"Jane Doe","password":"Secret123"}"#
    static let orderBody =
        #"{"items":[{"productId":"product-1","quantity":2,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}}"#

    @Test func routesMatchWholeSegmentsAndRefuseDotSegments() {
        #expect(GatewayRouter.matches("/api/users", prefix: "/api/users"))
        #expect(GatewayRouter.matches("/api/users/1/orders", prefix: "/api/users"))
        #expect(!GatewayRouter.matches("/api/usersX", prefix: "/api/users"))
        #expect(GatewayRouter.hasDotSegment("/api/users/../internal/credentials/verify"))
        #expect(GatewayRouter.hasDotSegment("/api/users/%2e%2e/internal"))
        #expect(GatewayRouter.hasDotSegment("/api/users/a%2Fb"))
        #expect(!GatewayRouter.hasDotSegment("/api/users/a.b"))
        #expect(GatewayRouter.isPublic(method: .POST, prefix: "/api/users", path: "/api/users"))
        #expect(!GatewayRouter.isPublic(method: .GET, prefix: "/api/users", path: "/api/users/1"))
        #expect(GatewayRouter.isPublic(method: .GET, prefix: "/api/inventory", path: "/api/inventory/product-1"))
        #expect(!GatewayRouter.isPublic(method: .PUT, prefix: "/api/inventory", path: "/api/inventory/product-1"))
        #expect(!GatewayRouter.isPublic(method: .GET, prefix: "/api/orders", path: "/api/orders"))
    }

    @Test(arguments: TestDatabase.available)
    func theGuidesFlowWorksThroughTheGateway(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let created = try await shop.call(.POST, "/api/users", json: Self.signup, headers: [("x-correlation-id", "flow-1")])
                #expect(created.status == .created)
                #expect(created.headers.first(name: "x-correlation-id") == "flow-1")
                let user = try created.json(UserDTO.self)

                let login = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"jane@example.com","password":"Secret123"}"#)
                #expect(login.status == .ok)
                let token = try login.json(TokenResponse.self)
                #expect(token.expiresIn == 3600)

                let me = try await shop.call(.GET, "/api/users/\(user.id)", token: token.token)
                #expect(me.status == .ok)
                #expect(try me.json(UserDTO.self) == user)

                let order = try await shop.call(
                    .POST, "/api/orders", json: Self.orderBody, token: token.token, headers: [("x-correlation-id", "flow-2")])
                #expect(order.status == .created)
                #expect(order.headers.first(name: "x-correlation-id") == "flow-2")
                let placed = try order.json(OrderDTO.self)
                #expect(placed.status == "pending" && placed.totalAmount == 59.98 && placed.userId == user.id)

                let read = try await shop.call(.GET, "/api/orders/\(placed.id)", token: token.token).json(OrderDTO.self)
                // The customer's name and email come from the order service's replica of users, filled by the user's event:
                // it may arrive between the two calls. Everything else reads back exactly as placed.
                #expect(read.customer == nil || read.customer == OrderDTO.Customer(name: user.name, email: user.email))
                var expected = placed
                expected.customer = read.customer
                #expect(read == expected)

                let page = try await shop.call(.GET, "/api/orders?page=1&limit=10", token: token.token)
                #expect(try page.json(Paginated<OrderDTO>.self).pagination.total == 1)

                let composed = try await shop.call(.GET, "/api/users/\(user.id)/orders", token: token.token)
                #expect(composed.status == .ok)
                let both = try composed.json(UserWithOrders.self)
                #expect(both.user == user && both.orders.map(\.id) == [placed.id])

                let catalog = try await shop.call(.GET, "/api/inventory/product-1")
                #expect(try catalog.json(ProductDTO.self).price == 29.99)
            }
        }
    }

    @Test func theGatewayGuardsProtectedRoutes() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let missing = try await shop.call(.GET, "/api/orders")
                #expect(missing.status == .unauthorized)
                #expect(missing.object["error"] as? String == "Access denied")

                let expired = try await shop.call(.GET, "/api/orders", token: try await harness.keys.expiredToken("x"))
                #expect(expired.status == .unauthorized)
                #expect(expired.headers.first(name: "www-authenticate")?.contains("invalid_token") == true)

                let forged = try await shop.call(.GET, "/api/orders", token: try await TestKeys().token("x", role: .admin))
                #expect(forged.status == .unauthorized)

                let escaped = try await shop.call(.POST, "/api/users/../internal/credentials/verify", json: "{}")
                #expect(escaped.status == .badRequest)
                #expect(try await shop.call(.GET, "/nowhere").status == .notFound)

                let wrong = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"admin@shop.local","password":"Nope12345"}"#)
                #expect(wrong.status == .unauthorized)
                #expect(wrong.object["error"] as? String == "Invalid credentials")

                let admin = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"admin@shop.local","password":"AdminPass1"}"#)
                let adminToken = try admin.json(TokenResponse.self).token
                let put = try await shop.call(.PUT, "/api/inventory/product-9", json: #"{"name":"Nine","price":9.99,"stock":9}"#, token: adminToken)
                #expect(put.status == .created)
            }
        }
    }

    @Test func unavailableUpstreamsOversizedBodiesAndHealth() async throws {
        try await Harness.with(.sqlite) { harness in
            // The payment service is reached at a port where nothing listens.
            try await InProcessShop.with(harness, extraGatewaySetup: { $0.serviceURLs[.payment] = "http://127.0.0.1:9" }) { shop in
                let token = try await harness.keys.token("someone")
                let started = ContinuousClock.now
                let payments = try await shop.call(.POST, "/api/payments", json: "{}", token: token)
                #expect(payments.status == .serviceUnavailable)
                #expect(payments.object["error"] as? String == "Service unavailable")
                #expect(ContinuousClock.now - started < .seconds(4))

                let big = #"{"email":"x@y.com","name":""# + String(repeating: "n", count: 100_000) + #"","password":"Secret123"}"#
                let tooLarge = try await shop.call(.POST, "/api/users", json: big)
                #expect(tooLarge.status == .payloadTooLarge)

                let health = try await shop.call(.GET, "/health")
                #expect(health.status == .ok)
                let checks = health.object["checks"] as? [String: [String: Any]] ?? [:]
                #expect(Set(checks.keys) == ["user", "auth", "order", "inventory", "registry"])
                #expect(checks.values.allSatisfy { $0["status"] as? String == "healthy" && $0["responseTime"] is Int })
                // Each service's own dependencies, with their response times, nested under it.
                let order = checks["order"]?["checks"] as? [String: [String: Any]] ?? [:]
                #expect(Set(order.keys) == ["database", "eventLog"])
                #expect(order.values.allSatisfy { $0["status"] as? String == "healthy" && $0["responseTime"] is Int })
                #expect((checks["auth"]?["checks"] as? [String: Any])?.keys.contains("signingKey") == true)
                #expect(try await shop.call(.GET, "/health/live").status == .ok)
            }
        }
    }

    /// With `GATEWAY_INTERNAL_PORT`, the public port answers the API only; health, metrics and the registry are on the
    /// internal port, which has no API.
    @Test func theInternalPortKeepsHealthMetricsAndTheRegistryOffThePublicPort() async throws {
        let bound = NIOLockedValueBox<Int?>(nil)
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(
                harness,
                extraGatewaySetup: { gateway in
                    gateway.internalPort = 0
                    gateway.onInternalServerRunning = { port in bound.withLockedValue { $0 = port } }
                }
            ) { shop in
                let internalURL = "http://127.0.0.1:\(try await eventually("the internal port listens") { bound.withLockedValue { $0 } })"
                let admin = try await harness.keys.token("admin-1", role: .admin)
                for (method, path) in [
                    (HTTPMethod.GET, "/health"), (.GET, "/health/ready"), (.GET, "/metrics"), (.GET, "/services"), (.GET, "/services/user"),
                    (.POST, "/register"), (.GET, "/nowhere"),
                ] {
                    let reply = try await shop.call(method, path, json: method == .POST ? "{}" : nil, token: admin)
                    #expect(reply.status == .notFound, "public \(method) \(path)")
                    #expect(reply.object["error"] as? String == "Not found", "public \(method) \(path)")
                }
                #expect(try await shop.call(.GET, "/health/live").status == .ok)
                #expect(try await shop.call(.GET, "/api/inventory/product-1").status == .ok)

                let health = try await InProcessShop.call(shop.client, .GET, internalURL + "/health")
                #expect(health.status == .ok)
                #expect((health.object["checks"] as? [String: Any])?.keys.contains("order") == true)
                let metrics = try await InProcessShop.call(shop.client, .GET, internalURL + "/metrics")
                #expect(metrics.status == .ok)
                #expect(String(buffer: metrics.body).contains("# TYPE"))
                #expect(try await InProcessShop.call(shop.client, .GET, internalURL + "/services").status == .unauthorized)
                #expect(try await InProcessShop.call(shop.client, .GET, internalURL + "/services", token: admin).status == .ok)
                let api = try await InProcessShop.call(shop.client, .GET, internalURL + "/api/inventory/product-1")
                #expect(api.status == .notFound)
            }
        }
    }

    @Test func unreadableInternalPortOrProxyListStopsTheGatewayFromStarting() {
        let environments: [Environment] = [
            ["GATEWAY_INTERNAL_PORT": "metrics"], ["GATEWAY_INTERNAL_PORT": "70000"], ["TRUSTED_PROXIES": "10.0.0.0/8,ingress"],
        ]
        for environment in environments {
            #expect(throws: GatewayConfiguration.ConfigurationError.self, "\(environment)") {
                try buildGateway(GatewayConfiguration(environment: environment))
            }
        }
        let good = GatewayConfiguration(environment: ["GATEWAY_INTERNAL_PORT": "9000", "TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8"])
        #expect(good.internalPort == 9000 && good.trustedProxies.contains("10.1.1.1") && good.problems.isEmpty)
    }

    /// Behind a trusted proxy (`TRUSTED_PROXIES`), a public route's limit counts the address the proxy forwarded for:
    /// clients behind one ingress do not share a bucket, and what a client writes into the header itself buys nothing.
    @Test func behindATrustedProxyEachForwardedClientHasItsOwnLimit() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(
                harness,
                extraGatewaySetup: { gateway in
                    gateway.rateLimit = "3/60s"
                    gateway.trustedProxies = try! TrustedProxies(parsing: "127.0.0.0/8")
                }
            ) { shop in
                var statuses: [HTTPResponseStatus] = []
                for forwardedFor in [
                    "203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.1",
                    // Forged hops left of the one the proxy appended change nothing.
                    "198.51.100.7, 203.0.113.1",
                    // Another client behind the same proxy has its own budget.
                    "203.0.113.2",
                ] {
                    statuses.append(try await shop.call(.GET, "/api/inventory/product-1", headers: [("x-forwarded-for", forwardedFor)]).status)
                }
                #expect(statuses == [.ok, .ok, .ok, .tooManyRequests, .tooManyRequests, .ok])
            }
        }
    }

    @Test func healthIs503WhenAServiceIsDown() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(
                harness,
                extraGatewaySetup: { gateway in
                    gateway.healthChecked = [.user, .payment]
                    gateway.serviceURLs[.payment] = "http://127.0.0.1:9"
                }
            ) { shop in
                let health = try await shop.call(.GET, "/health/ready")
                #expect(health.status == .serviceUnavailable)
                #expect(health.object["status"] as? String == "unhealthy")
                let checks = health.object["checks"] as? [String: [String: Any]] ?? [:]
                #expect(checks["payment"]?["status"] as? String == "unhealthy")
                #expect(checks["user"]?["status"] as? String == "healthy")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func renamingAUserReachesTheOrderAndNotificationReplicas(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let user = try await shop.call(.POST, "/api/users", json: Self.signup).json(UserDTO.self)
                let token = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"jane@example.com","password":"Secret123"}"#)
                    .json(TokenResponse.self).token
                let order = try await shop.call(.POST, "/api/orders", json: Self.orderBody, token: token).json(OrderDTO.self)

                // user.created reaches both replicas.
                try await eventually("the replicas to know the user") {
                    let read = try await shop.call(.GET, "/api/orders/\(order.id)", token: token).json(OrderDTO.self)
                    let recipient = try await shop.call(.GET, "/api/notifications/recipients/\(user.id)", token: token)
                    return read.customer == OrderDTO.Customer(name: "Jane Doe", email: "jane@example.com") && recipient.status == .ok
                }
                let renamed = try await shop.call(.PATCH, "/api/users/\(user.id)", json: #"{"name":"Jane Renamed"}"#, token: token)
                #expect(renamed.status == .ok)
                // user.updated reaches both, within a bounded time.
                try await eventually("the replicas to see the new name") {
                    let read = try await shop.call(.GET, "/api/orders/\(order.id)", token: token).json(OrderDTO.self)
                    let recipient = try await shop.call(.GET, "/api/notifications/recipients/\(user.id)", token: token).json(Contact.self)
                    return read.customer?.name == "Jane Renamed" && recipient.name == "Jane Renamed" && recipient.email == "jane@example.com"
                }
                let other = try await harness.keys.token("someone-else")
                #expect(try await shop.call(.GET, "/api/notifications/recipients/\(user.id)", token: other).status == .forbidden)
                // order.created → the stock was reserved → ORDER_CONFIRMED reached the customer, once.
                try await eventually("the order notification") {
                    let page = try await shop.call(.GET, "/api/notifications", token: token).json(Paginated<NotificationListItem>.self)
                    return page.results.map(\.id) == ["order-confirmed-\(order.id)"] && page.results.first?.type == "ORDER_CONFIRMED"
                }
                let others = try await shop.call(.GET, "/api/notifications", token: other).json(Paginated<NotificationListItem>.self)
                #expect(others.pagination.total == 0)
            }
        }
    }

    struct NotificationListItem: Codable, Sendable {
        var id: String
        var type: String
    }

}
