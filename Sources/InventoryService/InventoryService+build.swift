import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceMessaging
import ServiceResilience
import ShopContracts

/// Configuration of the inventory service.
public struct InventoryServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?
    /// How long an unpaid order holds its stock (`RESERVATION_TTL_SECONDS`, default 15 minutes).
    public var reservationTimeToLive: Duration
    /// How often expired reservations are released (a tenth of the time to live, between 100 ms and 30 s).
    public var expirySweepInterval: Duration
    /// The time reservations expire by (tests move a manual clock on instead of waiting).
    public var reservationClock: any WallClock = SystemClock()
    /// Consumer settings of its event subscriptions.
    public var consumer: ConsumerConfiguration = .init()

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.inventory.rawValue, defaultPort: ServiceName.inventory.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.reservationTimeToLive = .seconds(environment.int("RESERVATION_TTL_SECONDS", default: 900))
        self.expirySweepInterval = min(max(reservationTimeToLive / 10, .milliseconds(100)), .seconds(30))
    }
}

/// Builds the inventory service: the product catalog with prices and stock, reservations of ordered stock
/// (`order.created`), shipping of paid orders (`order.fulfillment.requested`), releases (`order.cancelled`, expiry).
public func buildInventoryService(_ configuration: InventoryServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    var messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    let reservations = Reservations(
        events: messaging.publisher, timeToLive: configuration.reservationTimeToLive, clock: configuration.reservationClock, logger: logger
    )
    let (caches, cacheServices) = try messaging.caches(settings: settings, logger: logger)
    let cache = ProductCache(caches: caches, enabled: settings.cacheEnabled)
    var handlers = EventHandlers()
    handlers.on(EventType.orderCreated, as: OrderCreated.self) { order, _, sql in try await reservations.reserve(order, in: sql) }
    handlers.on(EventType.orderFulfillmentRequested, as: OrderEvent.self) { order, _, sql in try await reservations.ship(order, in: sql) }
    handlers.on(EventType.orderCancelled, as: OrderEvent.self) { order, _, sql in try await reservations.release(orderId: order.orderId, in: sql) }
    // Stock changed by a handler is forgotten by the caches once its transaction committed.
    handlers.afterCommit(EventType.orderCreated, as: OrderCreated.self) { order, _ in await cache.forget(ids: order.items.map(\.productId)) }
    handlers.afterCommit(EventType.orderFulfillmentRequested, as: OrderEvent.self) { order, _ in
        await cache.forget(order: order.orderId, reservations: reservations, database: database)
    }
    handlers.afterCommit(EventType.orderCancelled, as: OrderEvent.self) { order, _ in
        await cache.forget(order: order.orderId, reservations: reservations, database: database)
    }
    messaging.consume(group: "inventory-service", handlers: handlers, configuration: configuration.consumer)
    var expiry = ReservationExpiry(reservations: reservations, database: database, interval: configuration.expirySweepInterval, logger: logger)
    expiry.released = { orderId in await cache.forget(order: orderId, reservations: reservations, database: database) }
    let verifier =
        configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger, caches: settings.cacheEnabled ? caches : nil)
    var health = HealthChecker()
    health.addCheck(database: database)
    health.addCheck(messaging: messaging)
    let router = ServiceApplication.makeRouter(settings: settings, health: health, openAPI: OpenAPIDocuments.inventory)
    let products = CachedProductRepository(source: SQLProductRepository(database: database, events: messaging.publisher), cache: cache)
    InventoryController(repository: products, verifier: verifier).addRoutes(to: router)
    ReservationController(reservations: reservations, database: database, verifier: verifier, cache: cache).addRoutes(to: router)
    let prepared = messaging
    var app = ServiceApplication.makeApplication(
        router: router, settings: settings,
        services: database.services + messaging.services + cacheServices + [expiry, try messaging.pruner(settings: settings)],
        logger: logger
    )
    app.beforeServerStarts {
        try await database.prepare(migrations: InventoryMigrations.all + MessagingMigrations.all)
        try await prepared.prepare()
    }
    return app
}
