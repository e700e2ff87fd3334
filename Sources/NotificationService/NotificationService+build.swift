import Foundation
import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceHTTP
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
    /// Where mail goes; nil: SMTP when ``smtpURL`` is set, else `.eml` files in ``mailDirectory``.
    public var mailSender: (any MailSender)?
    /// The SMTP server mail is sent through (`MAIL_SMTP_URL`: `smtp://[user:password@]host[:port][?starttls=required]`
    /// or `smtps://…`); nil: `.eml` files.
    public var smtpURL: String?
    /// How the `notification-mail` queue sends: attempts (`MAIL_MAX_ATTEMPTS`, default 8) with backoff from 2 s up to
    /// 10 min, and a lease longer than any one SMTP conversation.
    public var mailConsumer: ConsumerConfiguration
    /// The folder of the `.eml` files (`MAIL_DIRECTORY`); nil: `mail` in the data folder.
    public var mailDirectory: String?
    /// The sender of the shop's mail (`MAIL_FROM`, default `shop@shop.local`).
    public var mailFrom: String

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(
            name: ServiceName.notification.rawValue, defaultPort: ServiceName.notification.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.mailDirectory = environment.string("MAIL_DIRECTORY", default: "").isEmpty ? nil : environment.string("MAIL_DIRECTORY", default: "")
        self.mailFrom = environment.string("MAIL_FROM", default: "shop@shop.local")
        self.smtpURL = environment.get("MAIL_SMTP_URL").flatMap { $0.isEmpty ? nil : $0 }
        self.mailConsumer = ConsumerConfiguration(
            visibilityTimeout: .seconds(600), maxAttempts: max(1, environment.int("MAIL_MAX_ATTEMPTS", default: 8)), baseBackoff: .seconds(2),
            maxBackoff: .seconds(600)
        )
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
    let publisher = messaging.publisher
    queue.on(OrderNotification.eventType, as: OrderNotification.self) { note, _, sql in
        try await NotificationRepository.deliver(note, in: sql, mail: publisher)
    }
    messaging.consume(group: Queue.orderNotifications, handlers: queue, configuration: configuration.consumer, subscribes: false)
    // Mail is sent after the notification committed, from the service's own queue: an effect outside any transaction,
    // once per message (a batch that rolls back never mails twice), retried on transient failures, dead-lettered when
    // the server refuses it for good.
    let mail =
        try configuration.mailSender
        ?? configuration.smtpURL.map { try SMTPMailSender(url: $0, logger: logger) }
        ?? FileMailSender(directory: configuration.mailDirectory ?? (settings.dataDirectory as NSString).appendingPathComponent("mail"))
    let from = (name: "Shop", address: configuration.mailFrom)
    var mailQueue = EventHandlers()
    mailQueue.onEffect(MailRequest.eventType, as: MailRequest.self) { request, _ in
        try await mail.send(request.message(from: from))
    }
    messaging.consume(group: MailRequest.queue, handlers: mailQueue, configuration: configuration.mailConsumer, subscribes: false)

    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    var health = HealthChecker()
    health.addCheck(database: database)
    health.addCheck(messaging: messaging)
    let router = ServiceApplication.makeRouter(settings: settings, health: health, openAPI: OpenAPIDocuments.notification)
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
