import Foundation
import NIOHTTP1
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing

/// The shop from an attacker's side: other people's resources, internal endpoints, service tokens where a person
/// belongs, password guessing, and hostile bodies on every public route.
@Suite struct SecurityTests {
    typealias Lifecycle = OrderLifecycleTests

    @Test func aCustomerReachesNothingOfAnotherCustomerThroughAnyRoute() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (alice, aliceToken) = try await Lifecycle.customer(shop, email: "alice@example.com", name: "Alice")
                let (bob, bobToken) = try await Lifecycle.customer(shop, email: "bob@example.com", name: "Bob")
                let order = try await shop.call(.POST, "/api/orders", json: Lifecycle.orderBody(quantity: 1), token: bobToken).json(OrderDTO.self)
                let paid = try await shop.call(.POST, "/api/orders", json: Lifecycle.orderBody(quantity: 1), token: bobToken).json(OrderDTO.self)
                let payment = try await shop.call(
                    .POST, "/api/payments", json: Lifecycle.paymentBody(orderId: paid.id, amount: paid.totalAmount), token: bobToken
                )
                #expect(payment.status == .ok)
                let paymentID = try #require(payment.object["id"] as? String)
                let checkout = try await shop.call(
                    .POST, "/api/checkout",
                    json:
                        #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"},"paymentMethod":"credit_card","cardDetails":{"number":"4111111111111111","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#,
                    token: bobToken
                )
                let checkoutID = try #require(checkout.object["id"] as? String)

                let attempts: [(HTTPMethod, String, String?)] = [
                    (.GET, "/api/users/\(bob)", nil),
                    (.PATCH, "/api/users/\(bob)", #"{"name":"Mallory"}"#),
                    (.GET, "/api/users/\(bob)/orders", nil),
                    (.GET, "/api/orders/\(order.id)", nil),
                    (.GET, "/api/orders/user/\(bob)", nil),
                    (.POST, "/api/orders/\(order.id)/cancel", nil),
                    (.GET, "/api/orders/\(order.id)/payment", nil),
                    (.POST, "/api/payments", Lifecycle.paymentBody(orderId: order.id, amount: order.totalAmount)),
                    (.GET, "/api/payments/\(paymentID)", nil),
                    (.GET, "/api/checkout/\(checkoutID)", nil),
                    (.GET, "/api/notifications/recipients/\(bob)", nil),
                    (.PUT, "/api/inventory/product-1", #"{"name":"Free Mouse","price":0.01,"stock":100000}"#),
                    (.GET, "/api/admin/dlq", nil),
                ]
                for (method, path, body) in attempts {
                    let response = try await shop.call(method, path, json: body, token: aliceToken)
                    #expect(response.status == .forbidden || response.status == .notFound, "\(method) \(path): \(response.status)")
                    #expect(response.object["error"] is String, "\(method) \(path) answers a JSON error")
                    for secret in [bob, "bob@example.com", order.id, paymentID] where !path.contains(secret) {
                        #expect(!String(buffer: response.body).contains(secret), "\(method) \(path) leaks \(secret)")
                    }
                }
                // Bob's things are as they were: his order still pending and unpaid, his name, the price.
                let after = try await Lifecycle.order(shop, order.id, token: bobToken)
                #expect(after.status == "pending")
                #expect(try await shop.call(.GET, "/api/users/\(bob)", token: bobToken).json(UserDTO.self).name == "Bob")
                #expect(try await Lifecycle.product(shop).price == 29.99)
                // And Alice's own things still answer her.
                #expect(try await shop.call(.GET, "/api/users/\(alice)", token: aliceToken).status == .ok)
            }
        }
    }

    @Test func everyInternalEndpointRefusesEveryoneButTheServiceWithItsScope() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let endpoints: [(ServiceName, HTTPMethod, String, String?, String)] = [
                    (.user, .POST, "/internal/credentials/verify", #"{"email":"a@b.co","password":"Secret123"}"#, Scope.credentialsVerify),
                    (.order, .GET, "/internal/orders/some-order", nil, Scope.ordersRead),
                    (
                        .inventory, .POST, "/internal/reservations", #"{"orderId":"o-1","items":[{"productId":"product-1","quantity":1}]}"#,
                        Scope.inventoryReserve
                    ),
                    (.inventory, .DELETE, "/internal/reservations/o-1", nil, Scope.inventoryReserve),
                    (.payment, .POST, "/internal/charges", #"{"userId":"u","amount":1}"#, Scope.paymentsCharge),
                    (.payment, .GET, "/internal/charges?userId=u&idempotencyKey=k", nil, Scope.paymentsCharge),
                    (.payment, .POST, "/internal/charges/some-charge/refund", nil, Scope.paymentsRefund),
                    (.payment, .GET, "/internal/payments?orderId=o-1", nil, Scope.paymentsRead),
                ]
                for (service, method, path, body, scope) in endpoints {
                    let url = try #require(shop.serviceURLs[service]) + path
                    for (what, token) in try await harness.keys.intruders(for: scope) {
                        let response = try await InProcessShop.call(shop.client, method, url, json: body, token: token)
                        let expected: HTTPResponseStatus = token == nil || what.contains("expired") ? .unauthorized : .forbidden
                        #expect(response.status == expected, "\(method) \(path) with \(what): \(response.status)")
                        #expect(response.object["error"] is String)
                    }
                    // The right scope under another service's name in X-Service-ID is refused too.
                    let holder = try await harness.keys.token("order", role: .service, scopes: [scope])
                    let impostor = try await InProcessShop.call(
                        shop.client, method, url, json: body, token: holder, headers: [("x-service-id", "auth")])
                    #expect(impostor.status == .forbidden, "\(method) \(path) with a mismatched X-Service-ID")
                    #expect(impostor.object["error"] as? String == "X-Service-ID does not match the token")
                    // The control: the same token naming itself gets past the guard (whatever the endpoint then says).
                    let honest = try await InProcessShop.call(
                        shop.client, method, url, json: body, token: holder, headers: [("x-service-id", "order")])
                    let guardMessages = [
                        "Access denied", "Invalid token", "X-Service-ID does not match the token", "This endpoint is for users, not services",
                    ]
                    let honestError = honest.object["error"] as? String ?? ""
                    #expect(
                        !guardMessages.contains(honestError) && !honestError.hasPrefix("This endpoint needs"), "\(method) \(path): \(honestError)")
                    // None is reachable through the gateway, whoever asks.
                    let outside = try await shop.call(method, "/api" + path, json: body, token: holder)
                    #expect(outside.status == .notFound, "\(method) /api\(path) through the gateway: \(outside.status)")
                }
            }
        }
    }

    @Test func aServiceTokenCannotActAsACustomer() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (bob, _) = try await Lifecycle.customer(shop, email: "bob@example.com", name: "Bob")
                // A compromised service trying the user-facing routes with its own (valid) token.
                let service = try await harness.keys.token("notification", role: .service, scopes: [])
                for (method, path, body) in [
                    (HTTPMethod.POST, "/api/orders", Lifecycle.orderBody(quantity: 1)), (.GET, "/api/orders", nil), (.GET, "/api/users/\(bob)", nil),
                    (.GET, "/api/notifications", nil), (.POST, "/api/payments", Lifecycle.paymentBody(orderId: "x", amount: 1)),
                ] as [(HTTPMethod, String, String?)] {
                    let response = try await shop.call(method, path, json: body, token: service)
                    #expect(response.status == .forbidden, "\(method) \(path): \(response.status)")
                }
                #expect(try await shop.call(.GET, "/api/orders", token: try await harness.keys.token("bob-like", role: .user)).status == .ok)
            }
        }
    }

    @Test func passwordGuessingIsThrottledPerAccountAndPerAddressEvenInBursts() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness, extraGatewaySetup: { $0.rateLimit = "off" }) { shop in
                _ = try await Lifecycle.customer(shop, email: "bob@example.com", name: "Bob")
                _ = try await Lifecycle.customer(shop, email: "carol@example.com", name: "Carol")
                _ = try await Lifecycle.customer(shop, email: "dave@example.com", name: "Dave")
                @Sendable func login(_ email: String, _ password: String, headers: [(String, String)] = []) async throws -> InProcessShop.Reply {
                    try await shop.call(.POST, "/api/auth/login", json: #"{"email":"\#(email)","password":"\#(password)"}"#, headers: headers)
                }
                func burst(_ count: Int, _ email: @escaping @Sendable (Int) -> String) async throws -> [Int] {
                    try await withThrowingTaskGroup(of: Int.self) { group in
                        for index in 0..<count { group.addTask { Int(try await login(email(index), "Guess\(index)xx").status.code) } }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                }
                // Twenty guesses at Bob at once: the five-failure budget holds even when they all arrive together.
                let guesses = try await burst(20) { _ in "bob@example.com" }
                #expect(guesses.filter { $0 == 401 }.count <= 5, "\(guesses)")
                #expect(guesses.allSatisfy { $0 == 401 || $0 == 429 }, "\(guesses)")
                // Bob's failures are used up: even his right password waits now, and says how long.
                let blocked = try await login("BOB@example.com", "Secret123")
                #expect(blocked.status == .tooManyRequests)
                #expect(blocked.object["error"] as? String == "Too many failed login attempts")
                let retryAfter = try #require(blocked.headers.first(name: "retry-after").flatMap(Int.init))
                #expect(retryAfter > 0 && retryAfter <= 900)
                // Another account from the same address is not punished for Bob's.
                #expect(try await login("carol@example.com", "Secret123").status == .ok)

                // Guessing across many accounts from one address meets the address's budget (50 failures)…
                let sprayed = try await burst(60) { "nobody-\($0)@example.com" }
                #expect(sprayed.filter { $0 == 401 }.count <= 50, "\(sprayed.filter { $0 == 401 }.count) failures counted")
                #expect(sprayed.contains(429))
                // …after which no account can be tried from there, whatever X-Forwarded-For the client claims: the gateway
                // appends the address it sees, and that is the one counted.
                #expect(try await login("dave@example.com", "Secret123").status == .tooManyRequests)
                #expect(try await login("dave@example.com", "Secret123", headers: [("x-forwarded-for", "10.9.8.7")]).status == .tooManyRequests)
            }
        }
    }

    /// Every public route with malformed and malicious bodies: each gets a 4xx JSON error, nothing is written, the
    /// services stay healthy, and no error shows internals.
    @Test(arguments: TestDatabase.available)
    func hostileRequestsGetCleanRefusalsAndWriteNothing(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            // The gateway's rate limit would answer most of these itself; here every request must reach its service.
            try await InProcessShop.with(harness, extraGatewaySetup: { $0.rateLimit = "off" }) { shop in
                let (bob, token) = try await Lifecycle.customer(shop, email: "bob@example.com", name: "Bob")
                let admin = try await harness.keys.token("admin-1", role: .admin)
                let address = #""shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}"#
                let card =
                    #""paymentMethod":"credit_card","cardDetails":{"number":"4111111111111111","expiryMonth":12,"expiryYear":2030,"cvv":"123"}"#
                let nested = String(repeating: #"{"a":"#, count: 5000) + "1" + String(repeating: "}", count: 5000)
                // Wrong for any field: wrong types, numbers no field takes, and strings no validation should pass.
                let anyField = [
                    "1e400", "-1", "9223372036854775808", "0", "null", "true", "[]", "{}", #""\u0000""#, #""\ud800""#,
                    "\"" + String(repeating: "😀", count: 10_000) + "\"",
                ]
                // Wrong where an identifier, an email or a number is expected (a name may contain them: see below).
                let identifiers = anyField + [#""' OR 1=1--""#, #""\u202e gnp.exe""#, #""a string""#]
                var cases: [(HTTPMethod, String, String, String?)] = []  // method, path, body, token
                for value in anyField {
                    cases += [
                        (.POST, "/api/users", #"{"email":"eve@example.com","name":\#(value),"password":"Secret123"}"#, nil),
                        (.PATCH, "/api/users/\(bob)", #"{"name":\#(value)}"#, token),
                        (.PUT, "/api/inventory/product-1", #"{"name":\#(value),"price":10,"stock":5}"#, admin),
                    ]
                }
                for value in identifiers {
                    cases += [
                        (.POST, "/api/users", #"{"email":\#(value),"name":"Eve Doe","password":"Secret123"}"#, nil),
                        (.POST, "/api/auth/login", #"{"email":\#(value),"password":"x"}"#, nil),
                        (.POST, "/api/orders", #"{"items":[{"productId":"product-1","quantity":\#(value),"price":29.99}],\#(address)}"#, token),
                        (.POST, "/api/orders", #"{"items":[{"productId":\#(value),"quantity":1,"price":29.99}],\#(address)}"#, token),
                        (.POST, "/api/orders", #"{"items":[{"productId":"product-1","quantity":1,"price":\#(value)}],\#(address)}"#, token),
                        (.PUT, "/api/inventory/product-1", #"{"name":"Mouse","price":\#(value),"stock":5}"#, admin),
                        (.POST, "/api/payments", #"{"orderId":\#(value),"amount":1,\#(card)}"#, token),
                        (.POST, "/api/checkout", #"{"items":\#(value),\#(address),\#(card)}"#, token),
                    ]
                }
                // Stock may be zero; anything else on the list is wrong for it.
                for value in identifiers where value != "0" {
                    cases.append((.PUT, "/api/inventory/product-1", #"{"name":"Mouse","price":10,"stock":\#(value)}"#, admin))
                }
                let routes: [(HTTPMethod, String, String?)] = [
                    (.POST, "/api/users", nil), (.POST, "/api/auth/login", nil), (.POST, "/api/orders", token), (.PATCH, "/api/users/\(bob)", token),
                    (.PUT, "/api/inventory/product-1", admin), (.POST, "/api/payments", token), (.POST, "/api/checkout", token),
                ]
                for (method, path, auth) in routes {
                    cases += [
                        (method, path, nested, auth), (method, path, "not json", auth), (method, path, "{", auth), (method, path, "[1,2]", auth),
                    ]
                }
                cases += [
                    (.POST, "/api/users", #"{"email":"eve@example.com","name":"Eve Doe","password":"Secret123","password":"x"}"#, nil),
                    (.POST, "/api/users", #"{"email":"eve@example.com","name":"Eve Doe","password":"Secret123","role":"admin"}"#, nil),
                    (.POST, "/api/orders", #"{"items":[{"productId":"product-1","quantity":1,"price":29.99,"quantity":-5}],\#(address)}"#, token),
                    (.POST, "/api/orders", #"{"items":[],\#(address)}"#, token),
                    (.POST, "/api/orders", #"{"items":[{"productId":"product-1","quantity":1,"price":0.01}],\#(address)}"#, token),
                    (.GET, "/api/orders?page=99999999999999999999&limit=-1", "", token),
                    (.GET, "/api/inventory/'%20OR%201=1--", "", nil),
                ]
                for (method, path, body, auth) in cases {
                    let response = try await shop.call(method, path, json: body.isEmpty && method == .GET ? nil : body, token: auth)
                    let text = String(buffer: response.body)
                    let label = "\(method) \(path) \(body.prefix(80))"
                    // Refused for what the request says (not for who sent it, nor by a rate limit): 400, or 404/409 for an
                    // id or price that names nothing / disagrees, 413 for size.
                    // A login answers 401 for any credentials it cannot match, never saying which part was wrong.
                    let allowed = path == "/api/auth/login" ? [400, 401, 413] : [400, 404, 409, 413, 422]
                    #expect(allowed.contains(Int(response.status.code)), "\(label): \(response.status)")
                    #expect(response.object["error"] is String, "\(label): \(text.prefix(200))")
                    for leak in ["SELECT", "INSERT", "sqlite", "postgres", "PSQLError", "Fatal", "127.0.0.1", ".swift"] {
                        #expect(!text.contains(leak), "\(label) shows \(leak)")
                    }
                }
                // A body far over the limit is refused before it is read (413), or the connection is closed on it.
                if let big = try? await shop.call(.POST, "/api/users", json: "{\"a\":\"" + String(repeating: "a", count: 10 << 20) + "\"}") {
                    #expect(big.status == .payloadTooLarge && big.object["error"] is String)
                }
                // Nothing was written: no other user, no order, the catalog as seeded, Bob's name; everything healthy.
                #expect(try await shop.call(.GET, "/api/orders", token: token).json(Paginated<OrderDTO>.self).pagination.total == 0)
                #expect(
                    try await shop.call(.POST, "/api/auth/login", json: #"{"email":"eve@example.com","password":"Secret123"}"#).status
                        == .unauthorized)
                let product = try await Lifecycle.product(shop)
                #expect(product.price == 29.99 && product.stock == 100 && product.name == "Wireless Mouse")
                #expect(try await shop.call(.GET, "/api/users/\(bob)", token: token).json(UserDTO.self).name == "Bob")
                #expect(try await shop.call(.GET, "/health").status == .ok)

                // SQL metacharacters in a name are a name: stored and read back exactly, harming nothing.
                let name = "Robert'); DROP TABLE users;--"
                let renamed = try await shop.call(.PATCH, "/api/users/\(bob)", json: #"{"name":"\#(name)"}"#, token: token)
                #expect(renamed.status == .ok)
                #expect(try await shop.call(.GET, "/api/users/\(bob)", token: token).json(UserDTO.self).name == name)
                #expect(try await shop.call(.POST, "/api/auth/login", json: #"{"email":"bob@example.com","password":"Secret123"}"#).status == .ok)
            }
        }
    }
}
