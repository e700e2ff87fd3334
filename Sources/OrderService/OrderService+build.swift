import Hummingbird
import ServiceAuth
import ServiceCache
import ServiceCore
import ServiceDatabase
import ServiceDiscovery
import ServiceHTTP
import ServiceMessaging
import ServiceSaga
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
    public var paymentURL: String
    /// Where the payment service is, asked at each call instead of ``paymentURL`` (in-process wiring, tests).
    public var locatePayment: (@Sendable () -> String)?
    /// This service's client secret (`SERVICE_SECRET`); nil: the data folder's secrets file.
    public var serviceSecret: String?
    /// Where its service tokens come from; nil: the auth service, with ``serviceSecret``.
    public var serviceTokens: ServiceTokenSource?
    /// How long `POST /checkout` waits for the saga before answering 202 (`CHECKOUT_WAIT_MS`, default 5 s).
    public var checkoutWait: Duration
    /// How long the charge step may take (`CHECKOUT_CHARGE_TIMEOUT_MS`, default 20 s: more than the processor's 10).
    public var chargeTimeout: Duration
    /// The lease of a running saga (`SAGA_LEASE_MS`); after a crash, another run picks the saga up once it ran out.
    public var sagaLease: Duration?
    /// How long the payment-status breaker stays open before trial calls (`PAYMENT_BREAKER_OPEN_MS`, default 10 s).
    public var paymentBreakerOpen: Duration
    /// How often unfinished sagas are looked for.
    public var sagaRecoveryInterval: Duration = .seconds(1)
    /// How long a checkout's steps retry transient failures (a called service restarting) before it compensates
    /// (`CHECKOUT_DEADLINE_MS`, default 60 s).
    public var checkoutDeadline: Duration
    /// How long compensations retry transient failures before a checkout is left for an operator
    /// (`CHECKOUT_COMPENSATION_LIMIT_MS`, default a day).
    public var compensationLimit: Duration
    /// How long a graceful stop lets running checkouts go on before they stop at a step boundary (`SAGA_DRAIN_MS`,
    /// default 4 s: within the 10 s a supervisor or Kubernetes gives a process to stop).
    public var sagaDrain: Duration

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.order.rawValue, defaultPort: ServiceName.order.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.inventoryURL = environment.string(ServiceName.inventory.urlVariable, default: "http://127.0.0.1:\(ServiceName.inventory.port())")
        self.paymentURL = environment.string(ServiceName.payment.urlVariable, default: "http://127.0.0.1:\(ServiceName.payment.port())")
        self.serviceSecret = environment.get("SERVICE_SECRET")
        self.checkoutWait = .milliseconds(environment.int("CHECKOUT_WAIT_MS", default: 5000))
        self.chargeTimeout = .milliseconds(environment.int("CHECKOUT_CHARGE_TIMEOUT_MS", default: 20_000))
        self.paymentBreakerOpen = .milliseconds(max(1, environment.int("PAYMENT_BREAKER_OPEN_MS", default: 10_000)))
        self.sagaLease = environment.get("SAGA_LEASE_MS").flatMap(Int.init).map { .milliseconds($0) }
        self.checkoutDeadline = .milliseconds(max(1000, environment.int("CHECKOUT_DEADLINE_MS", default: 60_000)))
        self.compensationLimit = .milliseconds(max(1000, environment.int("CHECKOUT_COMPENSATION_LIMIT_MS", default: 86_400_000)))
        self.sagaDrain = .milliseconds(max(0, environment.int("SAGA_DRAIN_MS", default: 4000)))
    }
}

/// Builds the order service: orders priced from the catalog, per-user listing with pagination, the status machine
/// driven by the other services' events, and the checkout saga (orchestrated here, durable in this service's database).
public func buildOrderService(_ configuration: OrderServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    var messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    let (caches, cacheServices) = try messaging.caches(settings: settings, logger: logger)
    let catalogCache: Cache<CatalogEntry> = caches.cache(
        "order-catalog", configuration: CacheConfiguration(timeToLive: .seconds(300), maxEntries: 50_000, enabled: settings.cacheEnabled))
    var handlers = EventHandlers()
    for type in [EventType.userCreated, EventType.userUpdated] {
        handlers.on(type, as: UserChanged.self) { change, _, sql in try await Replicas.upsertCustomer(change, in: sql) }
    }
    handlers.on(EventType.productUpdated, as: ProductChanged.self) { change, _, sql in try await Replicas.upsertProduct(change, in: sql) }
    // The owner's event changed the replica: every instance's cached price goes once that committed.
    handlers.afterCommit(EventType.productUpdated, as: ProductChanged.self) { change, _ in
        await catalogCache.invalidate(keys: [CatalogPricing.key(change.id)])
    }
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
    let verifier =
        configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger, caches: settings.cacheEnabled ? caches : nil)
    var health = HealthChecker()
    health.addCheck(database: database)
    health.addCheck(messaging: messaging)
    let router = ServiceApplication.makeRouter(settings: settings, health: health, openAPI: OpenAPIDocuments.order)
    let tokens =
        try configuration.serviceTokens
        ?? .forService(
            ServiceName.order.rawValue, authURL: configuration.authURL, secret: configuration.serviceSecret,
            dataDirectory: settings.dataDirectory, allServices: ServiceName.shopServices.map(\.rawValue)
        )
    let pricing = CatalogPricing(
        catalog: ServiceClient(name: "inventory", baseURL: configuration.inventoryURL, credentials: tokens, registry: settings.registry),
        replicas: Replicas(database: database), cache: catalogCache)
    let repository = SQLOrderRepository(database: database, events: messaging.publisher)
    // Reads of payment status go through a circuit breaker with a fallback (the guide's payment example).
    let paymentStatus = ServiceClient(
        name: "payment", locate: configuration.locatePayment ?? { [url = configuration.paymentURL] in url }, timeout: .seconds(5),
        credentials: tokens,
        policies: ServiceClient.breakerPolicies(
            name: "payment", configuration: .init(consecutiveFailures: 3, openDuration: configuration.paymentBreakerOpen)
        ),
        registry: settings.registry
    )
    OrderController(repository: repository, pricing: pricing, verifier: verifier, payments: paymentStatus).addRoutes(to: router)

    let vault = CardVault()
    let saga = CheckoutSaga.definition(
        inventory: ServiceClient(name: "inventory", baseURL: configuration.inventoryURL, credentials: tokens, registry: settings.registry),
        payments: ServiceClient(
            name: "payment", locate: configuration.locatePayment ?? { [url = configuration.paymentURL] in url }, timeout: .seconds(30),
            credentials: tokens,
            registry: settings.registry
        ),
        repository: repository, vault: vault, chargeTimeout: configuration.chargeTimeout, deadline: configuration.checkoutDeadline,
        compensationLimit: configuration.compensationLimit
    )
    let orchestrator = SagaOrchestrator(
        definition: saga, database: database, logger: logger, lease: configuration.sagaLease, recoveryInterval: configuration.sagaRecoveryInterval,
        drainTimeout: configuration.sagaDrain,
        // A card lives in memory for its checkout's run only.
        afterRun: { vault.remove($0) }
    )
    CheckoutController(
        orchestrator: orchestrator, pricing: pricing, vault: vault, database: database, verifier: verifier, wait: configuration.checkoutWait,
        logger: logger
    ).addRoutes(to: router)
    // The event log's dead letters are administered here (the gateway routes /api/admin/dlq to this service).
    let admin = router.group().add(middleware: AuthMiddleware(verifier: verifier))
    DeadLetterController(log: messaging.log).addRoutes(to: admin)
    // So are the checkout sagas: list, show, and retry one left for an operator.
    SagaAdminController(admin: SagaAdmin(database: database, name: CheckoutSaga.name, logger: logger)).addRoutes(to: admin)
    let prepared = messaging
    var app = ServiceApplication.makeApplication(
        router: router, settings: settings,
        services: database.services + messaging.services + cacheServices + [
            orchestrator,
            // Finished checkouts go with their idempotency records (a replay after that starts a new checkout).
            try messaging.pruner(settings: settings, also: [orchestrator.pruneJob(also: ("checkouts", CheckoutController.removeRecords))]),
        ],
        logger: logger
    )
    app.beforeServerStarts {
        try await database.prepare(migrations: OrderMigrations.all + MessagingMigrations.all + SagaMigrations.all)
        try await prepared.prepare()
    }
    return app
}
