import AuthService
import Foundation
import GatewayService
import Hummingbird
import InventoryService
import NIOConcurrencyHelpers
import NotificationService
import OrderService
import PaymentService
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceMessaging
import ServiceResilience
import ServiceTesting
import ShopContracts
import UserService

/// Test wiring for the shop's services: fresh databases on the engine under test, a test signing key, port 0.
final class Harness: Sendable {
    let engine: TestDatabase
    let keys: TestKeys
    let dataDirectory: String
    /// The event log all services of this harness share: a SQLite file in the data folder, or a fresh schema.
    let eventLogURL: String
    /// This harness's keys in the test run's Redis (see ``TestRedis``).
    let redisKeyPrefix = TestRedis.freshPrefix()
    private let urls = NIOLockedValueBox<[String]>([])

    private init(engine: TestDatabase, keys: TestKeys, reservationTimeToLive: Duration, processorTimeout: Duration, sagaLease: Duration?) {
        self.engine = engine
        self.keys = keys
        self.sagaLease = sagaLease
        self.reservationTimeToLive = reservationTimeToLive
        self.processorTimeout = processorTimeout
        self.dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-test-\(UUID().uuidString)").path
        self.eventLogURL = engine == .postgres ? engine.freshURL(service: "eventlog") : ""
        urls.withLockedValue { $0.append(eventLogURL) }
    }

    /// Runs `body` with a harness, then drops its databases and files.
    static func with<T: Sendable>(
        _ engine: TestDatabase,
        reservationTimeToLive: Duration = .seconds(900),
        processorTimeout: Duration = .seconds(2),
        sagaLease: Duration? = nil,
        _ body: @Sendable (Harness) async throws -> T
    ) async throws -> T {
        ServiceMetrics.bootstrap()
        let harness = Harness(
            engine: engine, keys: try await TestKeys(), reservationTimeToLive: reservationTimeToLive, processorTimeout: processorTimeout,
            sagaLease: sagaLease
        )
        do {
            let result = try await body(harness)
            await harness.cleanUp()
            return result
        } catch {
            await harness.cleanUp()
            throw error
        }
    }

    func cleanUp() async {
        await TestDatabase.drop(urls.withLockedValue { $0 })
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }

    func settings(_ service: ServiceName, maxBodyBytes: Int = 1 << 20) -> ServiceSettings {
        let url = engine.freshURL(service: service.rawValue)
        urls.withLockedValue { $0.append(url) }
        var settings = ServiceSettings(
            name: service.rawValue, port: 0, logLevel: .warning, dataDirectory: dataDirectory, databaseURL: url, maxBodyBytes: maxBodyBytes,
            eventLogURL: eventLogURL
        )
        // The test run's Redis, if it has one: caches with a second level there.
        if let redis = TestRedis.url {
            settings.redisURL = redis
            settings.redisKeyPrefix = redisKeyPrefix
        }
        return settings
    }

    func user(orderURL: String = "http://127.0.0.1:9", adminPassword: String? = nil) -> UserServiceConfiguration {
        var configuration = UserServiceConfiguration(environment: [:])
        configuration.settings = settings(.user, maxBodyBytes: 16 * 1024)
        configuration.orderURL = orderURL
        configuration.bcryptCost = 4
        configuration.adminPassword = adminPassword
        configuration.tokenVerifier = keys.verifier
        return configuration
    }

    /// How long the inventory holds an unpaid order's stock in this harness.
    let reservationTimeToLive: Duration
    /// The time the inventory's reservations expire by: it starts at the real time and moves only when a test advances it.
    let reservationClock = ManualClock(sinceEpoch: SystemClock().sinceEpoch)
    /// The payment processor of this harness's payment services (its counters prove what was charged).
    let processor = SandboxProcessor()
    /// How long the payment service waits for the processor.
    let processorTimeout: Duration
    /// The lease of the order service's sagas (short, so a test can resume a saga after a simulated crash).
    let sagaLease: Duration?

    /// Where the notification service writes its `.eml` files.
    var mailDirectory: String { (dataDirectory as NSString).appendingPathComponent("mail") }

    func inventory() -> InventoryServiceConfiguration {
        var configuration = InventoryServiceConfiguration(environment: [:])
        configuration.settings = settings(.inventory)
        configuration.tokenVerifier = keys.verifier
        configuration.consumer = Self.fastConsumer
        configuration.reservationTimeToLive = reservationTimeToLive
        configuration.expirySweepInterval = min(max(reservationTimeToLive / 10, .milliseconds(50)), .seconds(1))
        configuration.reservationClock = reservationClock
        return configuration
    }

    func payment(orderURL: String) -> PaymentServiceConfiguration {
        var configuration = PaymentServiceConfiguration(environment: [:])
        configuration.settings = settings(.payment)
        configuration.orderURL = orderURL
        configuration.tokenVerifier = keys.verifier
        configuration.consumer = Self.fastConsumer
        configuration.processor = processor
        configuration.processorTimeout = processorTimeout
        configuration.serviceTokens = keys.serviceTokens(ServiceName.payment.rawValue, scopes: Scope.granted(to: .payment))
        return configuration
    }

    func order(inventoryURL: String, paymentURL: String = "http://127.0.0.1:9", locatePayment: (@Sendable () -> String)? = nil)
        -> OrderServiceConfiguration
    {
        var configuration = OrderServiceConfiguration(environment: [:])
        configuration.settings = settings(.order)
        configuration.inventoryURL = inventoryURL
        configuration.paymentURL = paymentURL
        configuration.locatePayment = locatePayment
        configuration.serviceTokens = keys.serviceTokens(ServiceName.order.rawValue, scopes: Scope.granted(to: .order))
        configuration.chargeTimeout = processorTimeout + .seconds(2)
        configuration.sagaLease = sagaLease
        configuration.tokenVerifier = keys.verifier
        configuration.consumer = Self.fastConsumer
        return configuration
    }

    func notification() -> NotificationServiceConfiguration {
        var configuration = NotificationServiceConfiguration(environment: [:])
        configuration.settings = settings(.notification)
        configuration.tokenVerifier = keys.verifier
        configuration.consumer = Self.fastConsumer
        configuration.mailDirectory = mailDirectory
        return configuration
    }

    /// Consumers that poll often and retry quickly, so tests wait little.
    static let fastConsumer = ConsumerConfiguration(pollInterval: .milliseconds(20))

    func auth(userURL: String) -> AuthServiceConfiguration {
        var configuration = AuthServiceConfiguration(environment: [:])
        configuration.settings = settings(.auth)
        configuration.userURL = userURL
        configuration.signingKey = Base64URL.encode(keys.key.privateKey.rawRepresentation)
        return configuration
    }

    /// An inventory service on a real port with `products` stored, for services that call it.
    func withCatalog<T: Sendable>(_ products: [(String, ProductUpdate)], _ body: @Sendable (String) async throws -> T) async throws -> T {
        let configuration = inventory()
        let admin = try await keys.token("admin-1", role: .admin)
        return try await RunningService.with([
            { onServerRunning in
                var configuration = configuration
                configuration.settings.onServerRunning = onServerRunning
                return try await buildInventoryService(configuration)
            }
        ]) { ports in
            let url = "http://127.0.0.1:\(ports[0])"
            let client = ServiceClient(name: "inventory", baseURL: url)
            for (id, product) in products {
                let response = try await client.send(.PUT, "/inventory/\(id)", body: product, bearer: admin)
                guard response.status == 201 else { throw SetupFailed(step: "PUT \(id) answered \(response.status)") }
            }
            return try await body(url)
        }
    }

    struct SetupFailed: Error {
        var step: String
    }
}
