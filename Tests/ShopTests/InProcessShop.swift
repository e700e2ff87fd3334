import AsyncHTTPClient
import AuthService
import Foundation
import GatewayService
import InventoryService
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NotificationService
import OrderService
import PaymentService
import ServiceCore
import ServiceTesting
import ShopContracts
import UserService

/// The whole shop in this test process on real ports (each service is still its own application with its own
/// database), reached through the gateway with an HTTP client.
struct InProcessShop: Sendable {
    let gatewayURL: String
    let serviceURLs: [ServiceName: String]
    let client: HTTPClient

    /// Starts inventory, order, user, auth, notification, payment and the gateway (in dependency order), seeds `catalog`,
    /// runs `body`.
    static func with<T: Sendable>(
        _ harness: Harness,
        catalog: [(String, ProductUpdate)] = [("product-1", ProductUpdate(name: "Wireless Mouse", price: 29.99, stock: 100))],
        adminPassword: String = "AdminPass1",
        extraGatewaySetup: @escaping @Sendable (inout GatewayConfiguration) -> Void = { _ in },
        _ body: @Sendable @escaping (InProcessShop) async throws -> T
    ) async throws -> T {
        // A whole shop is seven services with their databases and consumers: on two cores, more than two at once
        // (tests run in parallel) starve each other into timeouts. Tests beyond that wait here, before any deadline.
        await ShopThrottle.shared.acquire()
        do {
            let result = try await run(harness, catalog: catalog, adminPassword: adminPassword, extraGatewaySetup: extraGatewaySetup, body)
            await ShopThrottle.shared.release()
            return result
        } catch {
            await ShopThrottle.shared.release()
            throw error
        }
    }

    static func run<T: Sendable>(
        _ harness: Harness,
        catalog: [(String, ProductUpdate)],
        adminPassword: String,
        extraGatewaySetup: @escaping @Sendable (inout GatewayConfiguration) -> Void,
        _ body: @Sendable @escaping (InProcessShop) async throws -> T
    ) async throws -> T {
        // The order service calls the payment service, which starts later (it needs the order service's URL): the order
        // service looks it up at each call.
        let paymentURL = NIOLockedValueBox("http://127.0.0.1:9")
        return try await harness.withCatalog(catalog) { inventoryURL in
            let order = harness.order(inventoryURL: inventoryURL, locatePayment: { paymentURL.withLockedValue { $0 } })
            return try await RunningService.with([
                {
                    var c = order; c.settings.onServerRunning = $0; return try await buildOrderService(c)
                }
            ]) { orderPorts in
                let user = harness.user(orderURL: Self.url(orderPorts[0]), adminPassword: adminPassword)
                return try await RunningService.with([
                    {
                        var c = user; c.settings.onServerRunning = $0; return try await buildUserService(c)
                    }
                ]) { userPorts in
                    let auth = harness.auth(userURL: Self.url(userPorts[0]))
                    let notification = harness.notification()
                    let payment = harness.payment(orderURL: Self.url(orderPorts[0]))
                    return try await RunningService.with([
                        {
                            var c = auth; c.settings.onServerRunning = $0; return try await buildAuthService(c)
                        },
                        {
                            var c = notification; c.settings.onServerRunning = $0; return try await buildNotificationService(c)
                        },
                        {
                            var c = payment; c.settings.onServerRunning = $0; return try await buildPaymentService(c)
                        },
                    ]) { authPorts in
                        paymentURL.withLockedValue { $0 = Self.url(authPorts[2]) }
                        let urls: [ServiceName: String] = [
                            .inventory: inventoryURL, .order: Self.url(orderPorts[0]), .user: Self.url(userPorts[0]), .auth: Self.url(authPorts[0]),
                            .payment: Self.url(authPorts[2]), .notification: Self.url(authPorts[1]),
                        ]
                        var gateway = GatewayConfiguration(environment: [:])
                        gateway.settings = ServiceSettings(name: "gateway", port: 0, logLevel: .warning, maxBodyBytes: 64 * 1024)
                        gateway.serviceURLs = urls
                        gateway.healthChecked = [.user, .auth, .order, .inventory]
                        if let redis = TestRedis.url {
                            gateway.redisURL = redis
                            gateway.redisKeyPrefix = harness.redisKeyPrefix
                        }
                        extraGatewaySetup(&gateway)
                        let configured = gateway
                        return try await RunningService.with([
                            {
                                var c = configured; c.onServerRunning = $0; return try buildGateway(c)
                            }
                        ]) { gatewayPorts in
                            let client = HTTPClient(eventLoopGroupProvider: .singleton)
                            do {
                                let result = try await body(InProcessShop(gatewayURL: Self.url(gatewayPorts[0]), serviceURLs: urls, client: client))
                                try await client.shutdown()
                                return result
                            } catch {
                                try? await client.shutdown()
                                throw error
                            }
                        }
                    }
                }
            }
        }
    }

    static func url(_ port: Int) -> String { "http://127.0.0.1:\(port)" }

    /// A response read whole.
    struct Reply: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer

        func json<T: Decodable>(_ type: T.Type = T.self) throws -> T { try JSONDecoder().decode(T.self, from: body) }
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:] }
    }

    /// Sends a request through the gateway.
    func call(_ method: HTTPMethod, _ path: String, json: String? = nil, token: String? = nil, headers: [(String, String)] = []) async throws -> Reply
    {
        try await Self.call(client, method, gatewayURL + path, json: json, token: token, headers: headers)
    }

    static func call(
        _ client: HTTPClient, _ method: HTTPMethod, _ url: String, json: String? = nil, token: String? = nil, headers: [(String, String)] = []
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if let json {
            // application/json unless the test names its own type.
            if !request.headers.contains(name: "content-type") { request.headers.add(name: "content-type", value: "application/json") }
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await client.execute(request, timeout: .seconds(15))
        return Reply(status: response.status, headers: response.headers, body: try await response.body.collect(upTo: 4 << 20))
    }
}

/// At most two in-process shops at a time (see ``InProcessShop/with``).
actor ShopThrottle {
    static let shared = ShopThrottle(permits: 2)
    private var permits: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) {
        self.permits = permits
    }

    func acquire() async {
        if permits > 0 {
            permits -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            permits += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}
