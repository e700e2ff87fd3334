import Hummingbird
import SQLKit
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceDiscovery
import ServiceHTTP
import ServiceMessaging
import ShopContracts

/// Configuration of the payment service.
public struct PaymentServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    public var orderURL: String
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?
    /// Where charges and refunds go; nil: the payment provider at ``providerURL``.
    public var processor: (any PaymentProcessor)?
    /// The payment provider's API (`PAYMENT_PROVIDER_URL`, default the sandbox provider on this machine).
    public var providerURL: String
    /// The provider's secret key (`PAYMENT_PROVIDER_KEY`); nil: the sandbox provider's key in the data folder.
    public var providerKey: String?
    /// How long the processor has to answer a charge (`PAYMENT_PROCESSOR_TIMEOUT_MS`, default 10 s).
    public var processorTimeout: Duration
    /// How often payments of unknown outcome are settled with the provider (`PAYMENT_RECONCILE_INTERVAL_MS`, default
    /// 30 s; also once at start).
    public var reconcileInterval: Duration
    /// Consumer settings of its event subscriptions: patient, since refunds wait out a provider that is down (up to 20
    /// attempts, backoff from 1 s to 5 min, a lease longer than a refund takes).
    public var consumer = ConsumerConfiguration(
        visibilityTimeout: .seconds(300), maxAttempts: 20, baseBackoff: .seconds(1), maxBackoff: .seconds(300))
    /// This service's client secret (`SERVICE_SECRET`); nil: the data folder's secrets file.
    public var serviceSecret: String?
    /// Where its service tokens come from; nil: the auth service, with ``serviceSecret``.
    public var serviceTokens: ServiceTokenSource?

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.payment.rawValue, defaultPort: ServiceName.payment.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.orderURL = environment.string(ServiceName.order.urlVariable, default: "http://127.0.0.1:\(ServiceName.order.port())")
        self.processorTimeout = .milliseconds(environment.int("PAYMENT_PROCESSOR_TIMEOUT_MS", default: 10_000))
        self.providerURL = environment.string(
            ServiceName.paymentProvider.urlVariable, default: "http://127.0.0.1:\(ServiceName.paymentProvider.port())")
        self.providerKey = environment.get("PAYMENT_PROVIDER_KEY").flatMap { $0.isEmpty ? nil : $0 }
        self.reconcileInterval = .milliseconds(max(100, environment.int("PAYMENT_RECONCILE_INTERVAL_MS", default: 30_000)))
        self.serviceSecret = environment.get("SERVICE_SECRET")
    }
}

/// Builds the payment service: charges through a processor (idempotent, card data never stored), `payment.confirmed`
/// and `PAYMENT_PROCESSED` through the outbox, and refunds of cancelled orders (`order.cancelled`).
public func buildPaymentService(_ configuration: PaymentServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    var messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    let repository = PaymentRepository(database: database, events: messaging.publisher)
    let dataDirectory = settings.dataDirectory
    let processor: any PaymentProcessor =
        configuration.processor
        ?? ProviderProcessor(baseURL: configuration.providerURL) { [key = configuration.providerKey] in
            guard let key = key ?? PaymentProviderKey.read(dataDirectory: dataDirectory) else {
                throw PaymentProviderKey.Missing(path: PaymentProviderKey.path(dataDirectory: dataDirectory))
            }
            return key
        }
    var handlers = EventHandlers()
    // A cancelled order gives its money back: a call to the provider, so an effect after commit (never inside a
    // transaction that could be repeated). The provider's refund is keyed by the payment, so a redelivered event (or a
    // retry after a crash between refund and record) refunds once.
    handlers.onEffect(EventType.orderCancelled, as: OrderEvent.self) { cancelled, _ in
        guard let payment = try await repository.latest(orderId: cancelled.orderId) else { return }
        // Still being charged: try again once it is settled, or the money would be kept for a cancelled order.
        if payment.payment.status == "processing" { throw PaymentStillProcessing(paymentId: payment.payment.id) }
        guard ["completed", "failed"].contains(payment.payment.status) else { return }
        if try await repository.refund(id: payment.payment.id, processor: processor)?.payment.status == "refunded" {
            logger.info("Payment refunded", metadata: ["paymentId": "\(payment.payment.id)", "orderId": "\(cancelled.orderId)"])
        }
    }
    messaging.consume(group: "payment-service", handlers: handlers, configuration: configuration.consumer)

    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    let tokens =
        try configuration.serviceTokens
        ?? .forService(
            ServiceName.payment.rawValue, authURL: configuration.authURL, secret: configuration.serviceSecret,
            dataDirectory: settings.dataDirectory, allServices: ServiceName.shopServices.map(\.rawValue)
        )
    var health = HealthChecker()
    health.addCheck(database: database)
    health.addCheck(messaging: messaging)
    let router = ServiceApplication.makeRouter(settings: settings, health: health, openAPI: OpenAPIDocuments.payment)
    PaymentController(
        repository: repository,
        orders: ServiceClient(name: "order", baseURL: configuration.orderURL, credentials: tokens, registry: settings.registry),
        processor: processor,
        processorTimeout: configuration.processorTimeout,
        verifier: verifier
    ).addRoutes(to: router)
    let prepared = messaging
    var app = ServiceApplication.makeApplication(
        router: router, settings: settings,
        services: database.services + messaging.services + [
            PaymentReconciler(
                repository: repository, processor: processor, settleAfter: configuration.processorTimeout + .seconds(5),
                interval: configuration.reconcileInterval, logger: logger
            ),
            try messaging.pruner(settings: settings, also: [PaymentRetention.idempotencyKeys(database: database)]),
        ],
        logger: logger
    )
    app.beforeServerStarts {
        try await database.prepare(migrations: PaymentMigrations.all + MessagingMigrations.all)
        try await prepared.prepare()
    }
    return app
}

/// A refund waits for a payment that is still being charged (retried by the consumer with backoff).
struct PaymentStillProcessing: Error, CustomStringConvertible {
    var paymentId: String
    var description: String { "payment \(paymentId) is still being charged" }
}
