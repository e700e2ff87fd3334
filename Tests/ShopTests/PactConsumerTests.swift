import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import JWTKit
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing
import UserService

@testable import AuthService
@testable import OrderService
@testable import PaymentService
@testable import ServiceSaga

/// Consumer-driven contracts (the guide's Pact test, for every call one service makes to another): each test runs the
/// consumer's real client code (its HTTP handlers, its saga steps) against a Pact mock provider that answers from the
/// consumer's expectations, and keeps them as `contracts/pacts/<consumer>-<provider>.json`. The providers verify those
/// files in `PactProviderTests`. Values that only the provider can know (the id it gave an order or a payment) come
/// from its provider state (`PactMatch.fromState`).
@Suite struct PactConsumerTests {
    /// One interaction in pact_mock.py's spec format; `path`, `headers`, `query` and bodies are JSON fragments, which
    /// may hold matchers.
    static func interaction(
        _ description: String, given states: [(String, [String: String])] = [], method: String, path: String, query: String? = nil,
        headers: String = "{}", body: String? = nil, status: Int, responseBody: String? = nil
    ) -> String {
        let given = states.map { name, params in
            let fields = params.sorted { $0.key < $1.key }.map { "\(PactMatch.literal($0.key)):\(PactMatch.literal($0.value))" }
            return #"{"name":\#(PactMatch.literal(name)),"params":{\#(fields.joined(separator: ","))}}"#
        }
        var request = #""method":"\#(method)","path":\#(path),"headers":\#(headers)"#
        if let query { request += #","query":\#(query)"# }
        if let body { request += #","body":\#(body)"# }
        var response = #""status":\#(status)"#
        if let responseBody { response += #","headers":{"Content-Type":\#(PactMatch.json)},"body":\#(responseBody)"# }
        return
            #"{"description":\#(PactMatch.literal(description)),"providerStates":[\#(given.joined(separator: ","))],"request":{\#(request)},"response":{\#(response)}}"#
    }

    static func spec(consumer: String, provider: String, _ interactions: [String]) -> String {
        #"{"consumer":"\#(consumer)","provider":"\#(provider)","interactions":[\#(interactions.joined(separator: ","))]}"#
    }

    /// A request with a bearer token and, with a body, JSON.
    static let authorized = #"{"Authorization":\#(PactMatch.bearer)}"#
    static let authorizedJSON = #"{"Authorization":\#(PactMatch.bearer),"Content-Type":\#(PactMatch.json)}"#
    /// An error body as every service answers it.
    static let error = #"{"error":\#(PactMatch.like("Not found"))}"#

    static let address = #"{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}"#
    /// An order as the order service answers it: the fields the consumers decode, each matched by type.
    static func order(id: String = PactMatch.like("0d8e6f4a-51c2-4bb3-9a57-3f9e2d7c1a40"), userId: String, total: Double = 59.98) -> String {
        #"""
        {"id":\#(id),"userId":\#(userId),"status":\#(PactMatch.regex("^(pending|confirmed|paid|shipped|delivered|cancelled)$", "pending")),
         "items":\#(PactMatch.eachLike(#"{"productId":\#(PactMatch.like("product-1")),"name":\#(PactMatch.like("Wireless Mouse")),"quantity":\#(PactMatch.like(2)),"price":\#(PactMatch.like(29.99))}"#)),
         "shippingAddress":{"street":\#(PactMatch.like("1 Main St")),"city":\#(PactMatch.like("Springfield")),"country":\#(PactMatch.like("US")),"zipCode":\#(PactMatch.like("12345"))},
         "totalAmount":\#(PactMatch.like(total)),"createdAt":\#(PactMatch.timestamp),"updatedAt":\#(PactMatch.timestamp)}
        """#
    }

    /// A payment as the payment service answers it.
    static func payment(status: String, orderId: String = "5b0e3c1a-2f4d-4c6e-8a9b-0c1d2e3f4a5b") -> String {
        #"""
        {"id":\#(PactMatch.like("7c4e2a10-9b3d-4f5e-8a6c-1d2e3f4a5b6c")),"orderId":\#(PactMatch.like(orderId)),"amount":\#(PactMatch.like(59.98)),
         "status":"\#(status)","card":{"brand":\#(PactMatch.like("visa")),"last4":\#(PactMatch.regex("^[0-9]{4}$", "1111"))},"createdAt":\#(PactMatch.timestamp)}
        """#
    }

    // MARK: auth → user

    /// At login the auth service asks the user service whether the credentials are right: 200 with the user (whose id,
    /// role and email go into the token), or 401.
    @Test func authAsksTheUserServiceToCheckCredentials() async throws {
        let customer: [(String, [String: String])] = [
            ("a customer with these credentials", ["email": "ada@example.com", "password": "Secret123", "name": "Ada Lovelace"])
        ]
        let user = #"""
            {"id":\#(PactMatch.like("3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b")),"email":"ada@example.com","name":\#(PactMatch.like("Ada Lovelace")),
             "role":\#(PactMatch.regex("^(user|admin)$", "user")),"createdAt":\#(PactMatch.timestamp),"updatedAt":\#(PactMatch.timestamp)}
            """#
        let spec = Self.spec(
            consumer: "auth-service", provider: "user-service",
            [
                Self.interaction(
                    "a check of a customer's right credentials", given: customer, method: "POST", path: #""/internal/credentials/verify""#,
                    headers: Self.authorizedJSON, body: #"{"email":"ada@example.com","password":"Secret123"}"#, status: 200, responseBody: user),
                Self.interaction(
                    "a check of a customer's wrong password", given: customer, method: "POST", path: #""/internal/credentials/verify""#,
                    headers: Self.authorizedJSON, body: #"{"email":"ada@example.com","password":"Wrong1234"}"#, status: 401, responseBody: Self.error),
            ])
        try await Harness.with(.sqlite) { harness in
            try await PactMockProvider.with(spec) { url in
                try await buildAuthService(harness.auth(userURL: url)).test(.router) { client in
                    try await client.execute(
                        uri: "/auth/login", method: .post, headers: .json, body: .json(#"{"email":"ada@example.com","password":"Secret123"}"#)
                    ) { response async throws in
                        #expect(response.status == .ok)
                        let token = try response.json(TokenResponse.self).token
                        let identity = try await TokenVerifierFactory.verify(
                            token, jwks: try await client.execute(uri: "/.well-known/jwks.json", method: .get) { try $0.json(JWKS.self) })
                        #expect(identity.subject == "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b" && identity.role == .user)
                    }
                    try await client.execute(
                        uri: "/auth/login", method: .post, headers: .json, body: .json(#"{"email":"ada@example.com","password":"Wrong1234"}"#)
                    ) { response async throws in
                        #expect(response.status == .unauthorized)
                    }
                }
            }
        }
    }

    // MARK: user → order

    /// `GET /users/:id/orders` asks the order service for the user's orders, with the user's own token.
    @Test func theUserServiceAsksTheOrderServiceForAUsersOrders() async throws {
        let spec = Self.spec(
            consumer: "user-service", provider: "order-service",
            [
                Self.interaction(
                    "a request for a customer's orders", given: [("a customer with one order", [:])], method: "GET",
                    path: PactMatch.fromState(
                        "/orders/user/${userId}", regex: "^/orders/user/[^/]+$", example: "/orders/user/3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"),
                    headers: Self.authorized, status: 200,
                    responseBody: PactMatch.eachLike(Self.order(userId: PactMatch.like("3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"))))
            ])
        try await Harness.with(.sqlite) { harness in
            try await PactMockProvider.with(spec) { url in
                try await buildUserService(harness.user(orderURL: url)).test(.router) { client in
                    let user = try await client.execute(
                        uri: "/users", method: .post, headers: .json,
                        body: .json(#"{"email":"ada@example.com","password":"Secret123","name":"Ada Lovelace"}"#)
                    ) { try $0.json(UserDTO.self) }
                    let token = try await harness.keys.token(user.id)
                    try await client.execute(uri: "/users/\(user.id)/orders", method: .get, headers: .bearer(token)) { response async throws in
                        #expect(response.status == .ok)
                        let answer = try response.json(UserWithOrders.self)
                        #expect(answer.user.id == user.id && answer.orders.map(\.totalAmount) == [59.98])
                    }
                }
            }
        }
    }

    // MARK: payment → order

    /// A customer's payment: the payment service asks the order service (as itself) for the order, to check that it is
    /// the customer's, unpaid, and of that amount; an order it does not know is 404.
    @Test func thePaymentServiceAsksTheOrderServiceForTheOrderBeingPaid() async throws {
        let orderId = "5b0e3c1a-2f4d-4c6e-8a9b-0c1d2e3f4a5b"
        let spec = Self.spec(
            consumer: "payment-service", provider: "order-service",
            [
                Self.interaction(
                    "a request for a pending order", given: [("a customer's pending order of 59.98", ["userId": "customer-1"])], method: "GET",
                    path: PactMatch.fromState(
                        "/internal/orders/${orderId}", regex: "^/internal/orders/[0-9a-f-]{36}$", example: "/internal/orders/\(orderId)"),
                    headers: Self.authorized, status: 200,
                    responseBody: Self.order(id: PactMatch.like(orderId), userId: PactMatch.like("customer-1"))),
                Self.interaction(
                    "a request for an order that does not exist", method: "GET", path: #""/internal/orders/no-such-order""#,
                    headers: Self.authorized, status: 404, responseBody: Self.error),
            ])
        let card =
            #""paymentMethod":"credit_card","cardDetails":{"number":"4111111111111111","expiryMonth":12,"expiryYear":2030,"cvv":"123","holderName":"Ada Lovelace"}"#
        try await Harness.with(.sqlite) { harness in
            try await PactMockProvider.with(spec) { url in
                let token = try await harness.keys.token("customer-1")
                try await buildPaymentService(harness.payment(orderURL: url)).test(.router) { client in
                    for (order, status) in [(orderId, HTTPResponse.Status.ok), ("no-such-order", .notFound)] {
                        var headers = HTTPFields.bearer(token)
                        headers[.contentType] = "application/json"
                        headers[HTTPField.Name("Idempotency-Key")!] = "pay-\(order)"
                        try await client.execute(
                            uri: "/payments", method: .post, headers: headers, body: .json(#"{"orderId":"\#(order)","amount":59.98,\#(card)}"#)
                        ) { response async throws in
                            #expect(response.status == status, "\(order): \(String(buffer: response.body))")
                        }
                    }
                }
            }
        }
    }

    // MARK: order → inventory

    /// A new order's prices come from the inventory service (`GET /inventory/:id`, 404 for an unknown product); the
    /// checkout saga holds stock (`POST /internal/reservations`, 409 with a reason when there is not enough) and gives
    /// it back when it compensates (`DELETE /internal/reservations/:orderId`).
    @Test func theOrderServiceAsksTheInventoryForPricesAndHoldsStock() async throws {
        let product = #"""
            {"id":"product-1","name":\#(PactMatch.like("Wireless Mouse")),"price":\#(PactMatch.like(29.99)),"stock":\#(PactMatch.like(10)),"updatedAt":\#(PactMatch.timestamp)}
            """#
        let stocked: [(String, [String: String])] = [
            ("product product-1 at 29.99 with 10 in stock", ["productId": "product-1", "price": "29.99", "stock": "10"])
        ]
        let spec = Self.spec(
            consumer: "order-service", provider: "inventory-service",
            [
                Self.interaction(
                    "a request for a product", given: stocked, method: "GET", path: #""/inventory/product-1""#, headers: Self.authorized, status: 200,
                    responseBody: product),
                Self.interaction(
                    "a request for a product that does not exist", method: "GET", path: #""/inventory/no-such-product""#, headers: Self.authorized,
                    status: 404, responseBody: Self.error),
                Self.interaction(
                    "a reservation of stock for an order", given: stocked, method: "POST", path: #""/internal/reservations""#,
                    headers: Self.authorizedJSON, body: #"{"orderId":"order-reserve-1","items":[{"productId":"product-1","quantity":2}]}"#,
                    status: 201,
                    responseBody: #"{"orderId":"order-reserve-1","status":"reserved"}"#),
                Self.interaction(
                    "a reservation of more than the stock", given: stocked, method: "POST", path: #""/internal/reservations""#,
                    headers: Self.authorizedJSON, body: #"{"orderId":"order-reserve-2","items":[{"productId":"product-1","quantity":11}]}"#,
                    status: 409,
                    responseBody:
                        #"{"error":\#(PactMatch.like("Insufficient stock")),"reason":\#(PactMatch.like("insufficient stock of product-1"))}"#),
                Self.interaction(
                    "a release of an order's reservation",
                    given: [
                        ("order order-release-1 holds 2 of product-1", ["orderId": "order-release-1", "productId": "product-1", "quantity": "2"])
                    ],
                    method: "DELETE", path: #""/internal/reservations/order-release-1""#, headers: Self.authorized, status: 200,
                    responseBody: #"{"orderId":"order-release-1","status":"released"}"#),
            ])
        try await Harness.with(.sqlite) { harness in
            try await PactMockProvider.with(spec) { url in
                let configuration = harness.order(inventoryURL: url)
                let token = try await harness.keys.token("customer-1")
                try await buildOrderService(configuration).test(.router) { client in
                    for (productId, status) in [("product-1", HTTPResponse.Status.created), ("no-such-product", .badRequest)] {
                        let items = #"[{"productId":"\#(productId)","quantity":2,"price":29.99}]"#
                        try await client.execute(
                            uri: "/orders", method: .post, headers: .bearer(token),
                            body: .json(#"{"items":\#(items),"shippingAddress":\#(Self.address)}"#)
                        ) { response async throws in
                            #expect(response.status == status, "\(productId): \(String(buffer: response.body))")
                        }
                    }
                }
                try await Self.withSaga(harness, inventoryURL: url) { saga in
                    var held = Self.checkout(orderId: "order-reserve-1", quantity: 2)
                    try await saga.steps[0].action(&held, Self.context("saga-reserve-1", step: "reserveInventory"))
                    var short = Self.checkout(orderId: "order-reserve-2", quantity: 11)
                    await #expect(throws: SagaStepFailure.self) {
                        try await saga.steps[0].action(&short, Self.context("saga-reserve-2", step: "reserveInventory"))
                    }
                    // A checkout that compensates gives its stock back.
                    let compensated = Self.checkout(orderId: "order-release-1", quantity: 2)
                    try await saga.steps[0].compensation?(compensated, Self.context("saga-release-1", step: "reserveInventory"))
                }
            }
        }
    }

    // MARK: order → payment

    /// The checkout saga charges the card (`POST /internal/charges` with the saga's Idempotency-Key; 402 when declined),
    /// finds an earlier charge by its key after a restart (`GET /internal/charges`, 404 when there was none), refunds
    /// when it compensates (`POST /internal/charges/:id/refund`), and falls back on the order's latest payment (`GET
    /// /internal/payments?orderId=`), which is also what `GET /orders/:id/payment` shows.
    @Test func theCheckoutSagaChargesFindsAndRefundsPayments() async throws {
        let charge = { (orderId: String, number: String) in
            #"{"orderId":"\#(orderId)","userId":"customer-1","amount":59.98,"paymentMethod":"card","cardDetails":{"number":"\#(number)","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
        }
        let keyed = { (key: String) in #"{"Authorization":\#(PactMatch.bearer),"Content-Type":\#(PactMatch.json),"Idempotency-Key":"\#(key)"}"# }
        /// A charge the payment service has made: the saga finds it by its key, and refunds it.
        let paid = { (n: Int) -> [(String, [String: String])] in
            [
                (
                    "a completed charge of order 0a7d9c1e-5f3b-4d2a-9e8c-00000000000\(n) by customer-1 with key saga-paid-\(n):chargePayment",
                    ["orderId": "0a7d9c1e-5f3b-4d2a-9e8c-00000000000\(n)", "userId": "customer-1", "idempotencyKey": "saga-paid-\(n):chargePayment"]
                )
            ]
        }
        let spec = Self.spec(
            consumer: "order-service", provider: "payment-service",
            [
                Self.interaction(
                    "a charge for an order", method: "POST", path: #""/internal/charges""#, headers: keyed("saga-charge-1:chargePayment"),
                    body: charge("0a7d9c1e-5f3b-4d2a-9e8c-000000000101", "4111111111111111"), status: 200,
                    responseBody: Self.payment(status: "completed", orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000101")),
                Self.interaction(
                    "a charge the card's bank declines", method: "POST", path: #""/internal/charges""#, headers: keyed("saga-charge-2:chargePayment"),
                    body: charge("0a7d9c1e-5f3b-4d2a-9e8c-000000000102", "4000000000000002"), status: 402,
                    responseBody: #"{"error":\#(PactMatch.like("Your card was declined"))}"#),
                Self.interaction(
                    "a search for the charge made with a key", given: paid(1), method: "GET", path: #""/internal/charges""#,
                    query: #"{"userId":"customer-1","idempotencyKey":"saga-paid-1:chargePayment"}"#, headers: Self.authorized, status: 200,
                    responseBody: Self.payment(status: "completed", orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000001")),
                Self.interaction(
                    "a search for a charge never made", method: "GET", path: #""/internal/charges""#,
                    query: #"{"userId":"customer-1","idempotencyKey":"saga-never-1:chargePayment"}"#, headers: Self.authorized, status: 404,
                    responseBody: Self.error),
                Self.interaction(
                    "a refund of a completed payment", given: paid(2), method: "POST",
                    path: PactMatch.fromState(
                        "/internal/charges/${paymentId}/refund", regex: "^/internal/charges/[^/]+/refund$",
                        example: "/internal/charges/7c4e2a10-9b3d-4f5e-8a6c-1d2e3f4a5b6c/refund"),
                    headers: Self.authorized, status: 200,
                    responseBody: Self.payment(status: "refunded", orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000002")),
                Self.interaction(
                    "a request for an order's latest payment", given: paid(1), method: "GET", path: #""/internal/payments""#,
                    query: #"{"orderId":"0a7d9c1e-5f3b-4d2a-9e8c-000000000001"}"#, headers: Self.authorized, status: 200,
                    responseBody:
                        #"{"orderId":"0a7d9c1e-5f3b-4d2a-9e8c-000000000001","status":"completed","source":"payment-service","payment":\#(Self.payment(status: "completed", orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000001"))}"#
                ),
            ])
        try await Harness.with(.sqlite) { harness in
            try await PactMockProvider.with(spec) { url in
                try await Self.withSaga(harness, inventoryURL: "http://127.0.0.1:9", paymentURL: url) { saga in
                    let card = { (number: String) in
                        CardDetails(number: number, expiryMonth: 12, expiryYear: 2030, cvv: "123")
                    }
                    saga.vault.put(card("4111111111111111"), for: "saga-charge-1")
                    var charged = Self.checkout(orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000101", quantity: 2)
                    try await saga.definition.steps[1].action(&charged, Self.context("saga-charge-1", step: "chargePayment"))
                    #expect(charged.paymentId == "7c4e2a10-9b3d-4f5e-8a6c-1d2e3f4a5b6c")

                    saga.vault.put(card("4000000000000002"), for: "saga-charge-2")
                    var declined = Self.checkout(orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000102", quantity: 2)
                    await #expect(throws: SagaStepFailure.self) {
                        try await saga.definition.steps[1].action(&declined, Self.context("saga-charge-2", step: "chargePayment"))
                    }

                    // After a restart the card is gone: the charge made before it is found by its key.
                    var resumed = Self.checkout(orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000001", quantity: 2)
                    try await saga.definition.steps[1].action(&resumed, Self.context("saga-paid-1", step: "chargePayment"))
                    #expect(resumed.paymentId == "7c4e2a10-9b3d-4f5e-8a6c-1d2e3f4a5b6c")
                    // Compensation: the payment the state names is refunded.
                    try await saga.definition.steps[1].compensation?(resumed, Self.context("saga-paid-1", step: "chargePayment"))

                    let never = Self.checkout(orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000201", quantity: 2)
                    #expect(try await CheckoutSaga.findCharge(saga.payments, state: never, key: "saga-never-1:chargePayment") == nil)
                    let latest = try await CheckoutSaga.latestPayment(saga.payments, orderId: "0a7d9c1e-5f3b-4d2a-9e8c-000000000001")
                    #expect(latest?.status == "completed")
                }
            }
        }
    }

    // MARK: the services → auth

    /// The auth client every service and the gateway share (ServiceAuth): it verifies tokens with the auth service's
    /// published keys (`GET /.well-known/jwks.json`), and a service logs in with its client secret for a token of its
    /// own (`POST /auth/service`, 401 for a wrong secret). The keys are a fixed test key's, so the pact stays the same
    /// from run to run (a test key, not a secret).
    @Test func theServicesFetchTheAuthServicesKeysAndLogIn() async throws {
        let key = SigningKey(privateKey: try EdDSA.PrivateKey(d: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", curve: .ed25519))
        let published = key.published
        let jwk = #"""
            {"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":\#(PactMatch.like(published.keyID)),"x":\#(PactMatch.like(published.x))}
            """#
        let client: [(String, [String: String])] = [
            ("service order has a client secret", ["serviceId": "order", "serviceSecret": "pact-order-secret"])
        ]
        let spec = Self.spec(
            consumer: "shop-services", provider: "auth-service",
            [
                Self.interaction(
                    "a request for the token signing keys", method: "GET", path: #""/.well-known/jwks.json""#, status: 200,
                    responseBody: #"{"keys":\#(PactMatch.eachLike(jwk))}"#),
                Self.interaction(
                    "a service login", given: client, method: "POST", path: #""/auth/service""#, headers: #"{"Content-Type":\#(PactMatch.json)}"#,
                    body: #"{"serviceId":"order","serviceSecret":"pact-order-secret"}"#, status: 200,
                    responseBody:
                        #"{"token":\#(PactMatch.regex("^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJvcmRlciJ9.c2lnbmF0dXJl")),"expiresIn":\#(PactMatch.like(900))}"#
                ),
                Self.interaction(
                    "a service login with a wrong secret", given: client, method: "POST", path: #""/auth/service""#,
                    headers: #"{"Content-Type":\#(PactMatch.json)}"#, body: #"{"serviceId":"order","serviceSecret":"not-the-secret"}"#, status: 401,
                    responseBody: Self.error),
            ])
        try await PactMockProvider.with(spec) { url in
            let token = try await TokenIssuer(signingKey: key).issue(subject: "customer-1", role: .user, email: nil).token
            let identity = try await TokenVerifier.remote(authURL: url, logger: Logger(label: "test")).verify(token)
            #expect(identity.subject == "customer-1")
            let issued = try await ServiceTokenSource.remote(authURL: url, serviceID: "order", secret: "pact-order-secret").token()
            #expect(issued.split(separator: ".").count == 3)
            await #expect(throws: (any Error).self) {
                try await ServiceTokenSource.remote(authURL: url, serviceID: "order", secret: "not-the-secret").token()
            }
        }
    }

    // MARK: the services → the registry

    /// Every service keeps its instance in the gateway's registry (`RegistryAgent`: `POST /register`, a heartbeat `PUT
    /// /register/:id` as often as the answer says, `DELETE /register/:id` on a graceful shutdown), and finds another
    /// service's instances there (`RegistryLookup`: `GET /services/:name`, 404 when it has none).
    @Test func theServicesRegisterTheirInstancesAndFindOthers() async throws {
        let registered: [(String, [String: String])] = [
            (
                "instance order-pact0001 of order is registered at http://127.0.0.1:8080",
                ["name": "order", "instanceId": "order-pact0001", "url": "http://127.0.0.1:8080"]
            )
        ]
        let instance = #"""
            {"id":"order-pact0001","name":"order","url":"http://127.0.0.1:8080","healthCheck":\#(PactMatch.like("http://127.0.0.1:8080/health/live")),
             "registeredAt":\#(PactMatch.timestamp),"lastHeartbeat":\#(PactMatch.timestamp)}
            """#
        let spec = Self.spec(
            consumer: "shop-services", provider: "gateway",
            [
                Self.interaction(
                    "a registration of an instance", method: "POST", path: #""/register""#, headers: Self.authorizedJSON,
                    body: #"{"name":"order","url":"http://127.0.0.1:8080","instanceId":"order-pact0001"}"#, status: 201,
                    responseBody: #"{"instance":\#(instance),"heartbeatIntervalMs":\#(PactMatch.like(100)),"ttlMs":\#(PactMatch.like(15000))}"#),
                Self.interaction(
                    "a heartbeat of a registered instance", given: registered, method: "PUT", path: #""/register/order-pact0001""#,
                    headers: Self.authorized, status: 200),
                Self.interaction(
                    "a deregistration of an instance", given: registered, method: "DELETE", path: #""/register/order-pact0001""#,
                    headers: Self.authorized, status: 204),
                Self.interaction(
                    "a lookup of a service's instances", given: registered, method: "GET", path: #""/services/order""#, headers: Self.authorized,
                    status: 200, responseBody: #"{"name":"order","instances":\#(PactMatch.eachLike(instance))}"#),
                Self.interaction(
                    "a lookup of a service with no instances", method: "GET", path: #""/services/notification""#, headers: Self.authorized,
                    status: 404, responseBody: Self.error),
            ])
        let keys = try await TestKeys()
        try await PactMockProvider.with(spec) { url in
            let lines = NIOLockedValueBox<[String]>([])
            var logger = Logger(label: "agent") { label in
                JSONLogHandler(label: label, service: "order", output: .custom { line in lines.withLockedValue { $0.append(line) } })
            }
            logger.logLevel = .debug
            let agent = RegistryAgent(
                registryURL: url, name: "order", host: "127.0.0.1", instanceID: "order-pact0001",
                credentials: keys.serviceTokens("order", scopes: [Scope.registryRegister]), logger: logger, port: { 8080 })
            let group = ServiceGroup(configuration: .init(services: [agent], logger: logger))
            let running = Task { try await group.run() }
            try await eventually("a heartbeat", timeout: .seconds(15)) { lines.withLockedValue { $0 }.contains { $0.contains("Heartbeat sent") } }
            await group.triggerGracefulShutdown()
            try await running.value
            #expect(lines.withLockedValue { $0 }.contains { $0.contains("Deregistered from the service registry") })

            let lookup = RegistryLookup(registryURL: url)
            let credentials = keys.serviceTokens("payment", scopes: [])
            #expect(await lookup.urls(of: "order", credentials: credentials) == ["http://127.0.0.1:8080"])
            #expect(await lookup.urls(of: "notification", credentials: credentials) == [])
        }
    }

    // MARK: The saga, on its own

    struct Saga: Sendable {
        var definition: SagaDefinition<CheckoutState>
        var vault: CardVault
        var payments: ServiceClient
        var steps: [SagaStep<CheckoutState>] { definition.steps }
    }

    /// The order service's checkout saga with its clients as the service builds them (its service token, its timeouts),
    /// pointed at `inventoryURL` and `paymentURL`; its own database is a scratch one (no step here writes to it).
    static func withSaga(
        _ harness: Harness, inventoryURL: String, paymentURL: String = "http://127.0.0.1:9", _ body: @Sendable (Saga) async throws -> Void
    )
        async throws
    {
        let configuration = harness.order(inventoryURL: inventoryURL, paymentURL: paymentURL)
        try await TestDatabase.sqlite.withDatabase(migrations: OrderMigrations.all + MessagingMigrations.all) { database in
            let vault = CardVault()
            let payments = ServiceClient(name: "payment", baseURL: paymentURL, timeout: .seconds(30), credentials: configuration.serviceTokens)
            let definition = CheckoutSaga.definition(
                inventory: ServiceClient(name: "inventory", baseURL: inventoryURL, credentials: configuration.serviceTokens), payments: payments,
                repository: SQLOrderRepository(database: database, events: OutboxPublisher(source: "test", onCommit: {})), vault: vault,
                chargeTimeout: configuration.chargeTimeout)
            try await body(Saga(definition: definition, vault: vault, payments: payments))
        }
    }

    static func checkout(orderId: String, quantity: Int) -> CheckoutState {
        CheckoutState(
            orderId: orderId, userId: "customer-1", items: [.init(productId: "product-1", name: "Wireless Mouse", quantity: quantity, price: 29.99)],
            shippingAddress: .init(street: "1 Main St", city: "Springfield", country: "US", zipCode: "12345"), totalCents: 5998)
    }

    static func context(_ saga: String, step: String) -> SagaStepContext {
        SagaStepContext(sagaID: saga, step: step, attempt: 1)
    }
}
