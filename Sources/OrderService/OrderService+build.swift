import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ShopContracts

/// Configuration of the order service.
public struct OrderServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    public var inventoryURL: String
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?
    /// Consumer settings of its event subscriptions.
    public var consumer: ConsumerConfiguration = .init()

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.order.rawValue, defaultPort: ServiceName.order.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.inventoryURL = environment.string(ServiceName.inventory.urlVariable, default: "http://127.0.0.1:\(ServiceName.inventory.port())")
    }
}

/// Builds the order service: orders priced from the catalog, per-user listing with pagination, and the status machine.
public func buildOrderService(_ configuration: OrderServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    var messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    var handlers = EventHandlers()
    for type in [EventType.userCreated, EventType.userUpdated] {
        handlers.on(type, as: UserChanged.self) { change, _, sql in try await Replicas.upsertCustomer(change, in: sql) }
    }
    handlers.on(EventType.productUpdated, as: ProductChanged.self) { change, _, sql in try await Replicas.upsertProduct(change, in: sql) }
    // The guide's choreography: payment → paid (→ fulfilment), shipped, or cancelled when the stock could not be had.
    let publisher = messaging.publisher
    handlers.on(EventType.paymentConfirmed, as: PaymentEvent.self) { payment, _, sql in
        try await OrderEvents.paymentConfirmed(payment, in: sql, events: publisher, logger: logger)
    }
    handlers.on(EventType.orderProcessingFailed, as: OrderProcessingFailed.self) { failure, _, sql in
        try await OrderEvents.move(failure.orderId, to: .cancelled, reason: failure.reason, in: sql, events: publisher, logger: logger)
    }
    handlers.on(EventType.orderShipped, as: OrderShipped.self) { shipped, _, sql in
        try await OrderEvents.move(shipped.orderId, to: .shipped, trackingNumber: shipped.trackingNumber, in: sql, events: publisher, logger: logger)
    }
    messaging.consume(group: "order-service", handlers: handlers, configuration: configuration.consumer)
    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    var health = HealthChecker()
    health.addCheck(database: database)
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    OrderController(
        repository: SQLOrderRepository(database: database, events: messaging.publisher),
        catalog: ServiceClient(name: "inventory", baseURL: configuration.inventoryURL),
        replicas: Replicas(database: database),
        verifier: verifier
    ).addRoutes(to: router)
    // The event log's dead letters are administered here (the gateway routes /api/admin/dlq to this service).
    DeadLetterController(log: messaging.log).addRoutes(to: router.group().add(middleware: AuthMiddleware(verifier: verifier)))
    let prepared = messaging
    var app = ServiceApplication.makeApplication(router: router, settings: settings, services: database.services + messaging.services, logger: logger)
    app.beforeServerStarts {
        try await database.prepare(migrations: OrderMigrations.all + MessagingMigrations.all)
        try await prepared.prepare()
    }
    return app
}
