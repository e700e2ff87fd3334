import Foundation
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
    /// Consumer settings of its event subscriptions and of the `order-notifications` queue.
    public var consumer: ConsumerConfiguration = .init()
    /// Where mail goes; nil: `.eml` files in ``mailDirectory``.
    public var mailSender: (any MailSender)?
    /// The folder of the `.eml` files (`MAIL_DIRECTORY`); nil: `mail` in the data folder.
    public var mailDirectory: String?
    /// The sender of the shop's mail (`MAIL_FROM`, default `shop@shop.local`).
    public var mailFrom: String

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.notification.rawValue, defaultPort: ServiceName.notification.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.mailDirectory = environment.string("MAIL_DIRECTORY", default: "").isEmpty ? nil : environment.string("MAIL_DIRECTORY", default: "")
        self.mailFrom = environment.string("MAIL_FROM", default: "shop@shop.local")
    }
}

/// Builds the notification service: a replica of users' contact fields fed by `user.created` / `user.updated`, the
/// `order-notifications` work queue turned into recorded notifications and mail, and the caller's notifications.
public func buildNotificationService(_ configuration: NotificationServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    var messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    var handlers = EventHandlers()
    for type in [EventType.userCreated, EventType.userUpdated] {
        handlers.on(type, as: UserChanged.self) { change, _, sql in try await NotificationRepository.upsertRecipient(change, in: sql) }
    }
    messaging.consume(group: "notification-service", handlers: handlers, configuration: configuration.consumer)
    // The guide's order-notifications queue: competing consumers (one per instance), retried until the replica knows
    // the recipient, dead-lettered after the last attempt.
    var queue = EventHandlers()
    let mail = configuration.mailSender
        ?? FileMailSender(directory: configuration.mailDirectory ?? (settings.dataDirectory as NSString).appendingPathComponent("mail"))
    let from = (name: "Shop", address: configuration.mailFrom)
    queue.on(OrderNotification.eventType, as: OrderNotification.self) { note, _, sql in
        try await NotificationRepository.deliver(note, in: sql, mail: mail, from: from)
    }
    messaging.consume(group: Queue.orderNotifications, handlers: queue, configuration: configuration.consumer, subscribes: false)

    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    var health = HealthChecker()
    health.addCheck(database: database)
    health.addCheck(messaging: messaging)
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    NotificationController(repository: NotificationRepository(database: database), verifier: verifier).addRoutes(to: router)
    let prepared = messaging
    var app = ServiceApplication.makeApplication(
        router: router, settings: settings, services: database.services + messaging.services + [try messaging.pruner(settings: settings)],
        logger: logger
    )
    app.beforeServerStarts {
        try await database.prepare(migrations: NotificationMigrations.all + MessagingMigrations.all)
        try await prepared.prepare()
        // Retired: notifications of order.created (ORDER_RECEIVED) became the order-notifications queue's ORDER_CONFIRMED.
        try await prepared.log.unsubscribe(group: "notification-service", types: [EventType.orderCreated])
    }
    return app
}
