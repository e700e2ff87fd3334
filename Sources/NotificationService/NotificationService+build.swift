import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ShopContracts

/// Configuration of the notification service.
public struct NotificationServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?
    /// Consumer settings of its event subscriptions.
    public var consumer: ConsumerConfiguration = .init()

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.notification.rawValue, defaultPort: ServiceName.notification.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
    }
}

/// Builds the notification service: a replica of users' contact fields fed by `user.created` / `user.updated`, a
/// notification for each `order.created`, and the caller's notifications.
public func buildNotificationService(_ configuration: NotificationServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    var messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    var handlers = EventHandlers()
    for type in [EventType.userCreated, EventType.userUpdated] {
        handlers.on(type, as: UserChanged.self) { change, _, sql in try await NotificationRepository.upsertRecipient(change, in: sql) }
    }
    // The guide's order.created handler sends the customer a confirmation; reserving stock is the order saga's.
    handlers.on(EventType.orderCreated, as: OrderCreated.self) { order, _, sql in try await NotificationRepository.recordOrderReceived(order, in: sql) }
    messaging.consume(group: "notification-service", handlers: handlers, configuration: configuration.consumer)

    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    var health = HealthChecker()
    health.addCheck(database: database)
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    NotificationController(repository: NotificationRepository(database: database), verifier: verifier).addRoutes(to: router)
    let prepared = messaging
    var app = ServiceApplication.makeApplication(router: router, settings: settings, services: database.services + messaging.services, logger: logger)
    app.beforeServerStarts {
        try await database.prepare(migrations: NotificationMigrations.all + MessagingMigrations.all)
        try await prepared.prepare()
    }
    return app
}
