import AsyncHTTPClient
import AuthService
import Foundation
import InventoryService
import NIOHTTP1
import OrderService
import PaymentService
import ServiceAuth
import ServiceCore
import ServiceLifecycle
import ServiceTesting
import ShopContracts
import Testing
import UserService

/// Each provider verifies every pact its consumers keep in `contracts/pacts/` (written by `PactConsumerTests`) with
/// pact-python's verifier, against itself running on a real port, on both engines. Provider states are set up through
/// a test-only endpoint (``ProviderStates``) that uses the provider's own API; a normal start has no such route.
/// A broken contract fails with the verifier's `CONTRACT BROKEN: consumer … expects …` lines, naming the consumer.
@Suite struct PactProviderTests {
    /// Verifies the pacts `consumer` keeps with `provider`, sending `token` in place of the pacts' example token.
    static func verify(_ provider: ServiceName, consumer: ServiceName, url: String, states: String, token: String) async throws {
        try await verify(provider, consumer: "\(consumer.rawValue)-service", url: url, states: states, token: token)
    }

    static func verify(_ provider: ServiceName, consumer: String, url: String, states: String, token: String?) async throws {
        try await verify("\(provider.rawValue)-service", consumer: consumer, url: url, states: states, token: token)
    }

    static func verify(_ provider: String, consumer: String, url: String, states: String, token: String?) async throws {
        let pact = Pact.file(consumer: consumer, provider: provider)
        try #require(FileManager.default.fileExists(atPath: pact.path), "no pact of \(consumer) with \(provider)")
        let result = try await PactVerifier.verify(
            provider: provider, url: url, statesURL: states, headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [], pacts: [pact])
        let broken = result.output.split(separator: "\n").filter { $0.hasPrefix("CONTRACT BROKEN") }.joined(separator: "\n")
        #expect(result.passed && broken.isEmpty, "\(provider) broke the pact of \(consumer):\n\(broken.isEmpty ? result.output : broken)")
        #expect(result.output.contains("VERIFIED "), "\(result.output)")
    }

    /// Every kept pact is verified by one of the tests below.
    @Test func everyPactHasItsProviderVerification() throws {
        let verified: Set<String> = [
            "auth-service-user-service.json", "user-service-order-service.json", "payment-service-order-service.json",
            "order-service-inventory-service.json", "order-service-payment-service.json", "shop-services-auth-service.json",
            "shop-services-gateway.json",
        ]
        let kept = Set(try FileManager.default.contentsOfDirectory(atPath: Pact.directory.path).filter { $0.hasSuffix(".json") })
        #expect(kept == verified)
    }

    static func running<T: Sendable>(
        _ build: @escaping @Sendable (_ onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any ServiceLifecycle.Service,
        _ body: @Sendable @escaping (String, HTTPClient) async throws -> T
    ) async throws -> T {
        try await RunningService.with([build]) { ports in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let result = try await body("http://127.0.0.1:\(ports[0])", client)
                try await client.shutdown()
                return result
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
    }

    static func require(_ reply: InProcessShop.Reply, _ statuses: Set<UInt>, _ what: String) throws -> InProcessShop.Reply {
        guard statuses.contains(reply.status.code) else {
            throw Harness.SetupFailed(step: "\(what) answered \(reply.status.code): \(String(buffer: reply.body))")
        }
        return reply
    }

    // MARK: the gateway's registry

    @Test func theGatewaysRegistryKeepsTheServicesPact() async throws {
        try await GatewayResilienceTests.withGateway(upstreamPort: 9) { gateway in
            let order = try await gateway.keys.token(ServiceName.order.rawValue, role: .service, scopes: Scope.granted(to: .order))
            let setUp: ProviderStates.SetUp = { state, params in
                guard state.hasPrefix("instance "), let name = params["name"], let id = params["instanceId"], let url = params["url"] else {
                    throw ProviderStates.Unknown(state)
                }
                let body = #"{"name":"\#(name)","url":"\#(url)","instanceId":"\#(id)"}"#
                _ = try Self.require(try await gateway.call(.POST, "/register", json: body, token: order), [200, 201], "the registration")
                return [:]
            }
            try await ProviderStates.with(setUp) { states in
                try await Self.verify("gateway", consumer: "shop-services", url: gateway.url, states: states, token: order)
            }
        }
    }

    // MARK: auth-service

    @Test(arguments: TestDatabase.available)
    func theAuthServiceKeepsTheServicesPact(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            // The state the pact names is this provider's configuration: the order service's client secret.
            let secret = "pact-order-secret"
            let configuration = {
                var configuration = harness.auth(userURL: "http://127.0.0.1:9")
                configuration.serviceClients = [ServiceName.order.rawValue: secret]
                return configuration
            }()
            try await Self.running({
                var c = configuration; c.settings.onServerRunning = $0; return try await buildAuthService(c)
            }) { url, _ in
                let setUp: ProviderStates.SetUp = { state, params in
                    guard state == "service order has a client secret", params["serviceId"] == ServiceName.order.rawValue,
                        params["serviceSecret"] == secret
                    else { throw ProviderStates.Unknown(state) }
                    return [:]
                }
                try await ProviderStates.with(setUp) { states in
                    try await Self.verify(.auth, consumer: "shop-services", url: url, states: states, token: nil)
                }
            }
        }
    }

    // MARK: user-service

    @Test(arguments: TestDatabase.available)
    func theUserServiceKeepsTheAuthServicesPact(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let configuration = harness.user()
            try await Self.running({
                var c = configuration; c.settings.onServerRunning = $0; return try await buildUserService(c)
            }) { url, client in
                let setUp: ProviderStates.SetUp = { state, params in
                    guard state == "a customer with these credentials" else { throw ProviderStates.Unknown(state) }
                    let body = try String(decoding: JSONEncoder().encode(params), as: UTF8.self)
                    // 409: set up for an earlier interaction already.
                    _ = try Self.require(try await InProcessShop.call(client, .POST, url + "/users", json: body), [201, 409], "sign-up")
                    return [:]
                }
                try await ProviderStates.with(setUp) { states in
                    let token = try await harness.keys.token(ServiceName.auth.rawValue, role: .service, scopes: Scope.granted(to: .auth))
                    try await Self.verify(.user, consumer: .auth, url: url, states: states, token: token)
                }
            }
        }
    }

    // MARK: order-service

    @Test(arguments: TestDatabase.available)
    func theOrderServiceKeepsTheUserAndPaymentServicesPacts(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await harness.withCatalog([("product-1", ProductUpdate(name: "Wireless Mouse", price: 29.99, stock: 1000))]) { inventoryURL in
                let configuration = harness.order(inventoryURL: inventoryURL)
                try await Self.running({
                    var c = configuration; c.settings.onServerRunning = $0; return try await buildOrderService(c)
                }) {
                    url, client in
                    let customer = "customer-1"
                    let customerToken = try await harness.keys.token(customer)
                    let setUp: ProviderStates.SetUp = { state, params in
                        let order =
                            #"{"items":[{"productId":"product-1","quantity":2,"price":29.99}],"shippingAddress":\#(PactConsumerTests.address)}"#
                        switch state {
                        case "a customer with one order":
                            _ = try Self.require(
                                try await InProcessShop.call(client, .POST, url + "/orders", json: order, token: customerToken), [201], "an order")
                            return ["userId": customer]
                        case "a customer's pending order of 59.98":
                            let owner = params["userId"] ?? customer
                            let token = try await harness.keys.token(owner)
                            let created = try Self.require(
                                try await InProcessShop.call(client, .POST, url + "/orders", json: order, token: token), [201], "an order")
                            return ["orderId": try created.json(OrderDTO.self).id]
                        default:
                            throw ProviderStates.Unknown(state)
                        }
                    }
                    try await ProviderStates.with(setUp) { states in
                        try await Self.verify(.order, consumer: .user, url: url, states: states, token: customerToken)
                        let payment = try await harness.keys.token(ServiceName.payment.rawValue, role: .service, scopes: Scope.granted(to: .payment))
                        try await Self.verify(.order, consumer: .payment, url: url, states: states, token: payment)
                    }
                }
            }
        }
    }

    // MARK: inventory-service

    @Test(arguments: TestDatabase.available)
    func theInventoryServiceKeepsTheOrderServicesPact(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let configuration = harness.inventory()
            try await Self.running({
                var c = configuration; c.settings.onServerRunning = $0; return try await buildInventoryService(c)
            }) {
                url, client in
                let admin = try await harness.keys.token("admin-1", role: .admin)
                let order = try await harness.keys.token(ServiceName.order.rawValue, role: .service, scopes: Scope.granted(to: .order))
                let setUp: ProviderStates.SetUp = { state, params in
                    switch state {
                    case "product product-1 at 29.99 with 10 in stock":
                        let id = params["productId"] ?? "product-1"
                        let body = #"{"name":"Wireless Mouse","price":\#(params["price"] ?? "29.99"),"stock":\#(params["stock"] ?? "10")}"#
                        _ = try Self.require(
                            try await InProcessShop.call(client, .PUT, url + "/inventory/\(id)", json: body, token: admin), [200, 201], "the product")
                    case "order order-release-1 holds 2 of product-1":
                        let product = #"{"name":"Wireless Mouse","price":29.99,"stock":10}"#
                        _ = try Self.require(
                            try await InProcessShop.call(client, .PUT, url + "/inventory/\(params["productId"] ?? "")", json: product, token: admin),
                            [200, 201], "the product")
                        let hold =
                            #"{"orderId":"\#(params["orderId"] ?? "")","items":[{"productId":"\#(params["productId"] ?? "")","quantity":\#(params["quantity"] ?? "1")}]}"#
                        _ = try Self.require(
                            try await InProcessShop.call(client, .POST, url + "/internal/reservations", json: hold, token: order), [201],
                            "the reservation")
                    default:
                        throw ProviderStates.Unknown(state)
                    }
                    return [:]
                }
                try await ProviderStates.with(setUp) { states in
                    try await Self.verify(.inventory, consumer: .order, url: url, states: states, token: order)
                }
            }
        }
    }

    // MARK: payment-service

    @Test(arguments: TestDatabase.available)
    func thePaymentServiceKeepsTheOrderServicesPact(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let configuration = harness.payment(orderURL: "http://127.0.0.1:9")
            try await Self.running({
                var c = configuration; c.settings.onServerRunning = $0; return try await buildPaymentService(c)
            }) {
                url, client in
                let order = try await harness.keys.token(ServiceName.order.rawValue, role: .service, scopes: Scope.granted(to: .order))
                let setUp: ProviderStates.SetUp = { state, params in
                    guard state.hasPrefix("a completed charge of order "), let orderId = params["orderId"], let userId = params["userId"],
                        let key = params["idempotencyKey"]
                    else { throw ProviderStates.Unknown(state) }
                    let body =
                        #"{"orderId":"\#(orderId)","userId":"\#(userId)","amount":59.98,"paymentMethod":"card","cardDetails":{"number":"4111111111111111","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
                    // The same key and body answer the first charge again: the state can be set up more than once.
                    let charged = try Self.require(
                        try await InProcessShop.call(
                            client, .POST, url + "/internal/charges", json: body, token: order, headers: [("Idempotency-Key", key)]),
                        [200], "the charge")
                    return ["paymentId": try charged.json(PaymentDTO.self).id]
                }
                try await ProviderStates.with(setUp) { states in
                    try await Self.verify(.payment, consumer: .order, url: url, states: states, token: order)
                }
            }
        }
    }
}
