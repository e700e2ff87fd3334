import Logging
import ServiceCore
import ServiceDatabase
import ServiceLifecycle

/// A service's messaging in one piece: the shared event log, the relay of its outbox, and its consumers.
///
/// Build it with the service's database, add ``services`` to the application (they wait for ``prepare()``), and call
/// ``prepare()`` after the service's own migrations (which must include ``MessagingMigrations/all``).
public struct Messaging: Sendable {
    public let log: EventLog
    public let relay: OutboxRelay
    public let source: String
    public private(set) var consumers: [EventConsumer] = []
    let database: Database
    let logger: Logger

    /// Opens the event log named by the settings (`EVENTLOG_URL`) for the service owning `database`.
    public static func open(settings: ServiceSettings, database: Database, logger: Logger) async throws -> Messaging {
        let log = try await EventLog.open(url: settings.eventLogURL, dataDirectory: settings.dataDirectory, logger: logger)
        return Messaging(log: log, database: database, source: "\(settings.name)-service", logger: logger)
    }

    public init(log: EventLog, database: Database, source: String, logger: Logger) {
        self.log = log
        self.database = database
        self.source = source
        self.logger = logger
        self.relay = OutboxRelay(database: database, log: log, logger: logger)
    }

    /// Adds a consumer group of this service with `handlers`.
    public mutating func consume(group: String, handlers: EventHandlers, configuration: ConsumerConfiguration = .init(), subscribes: Bool = true) {
        consumers.append(
            EventConsumer(
                group: group, log: log, database: database, handlers: handlers, configuration: configuration, subscribes: subscribes,
                logger: logger, afterCommit: { [relay] in relay.wakeup.signal() }
            )
        )
    }

    /// Creates the log's tables and declares every consumer group, so nothing published from now on is missed.
    public func prepare() async throws {
        try await log.prepare()
        for consumer in consumers { try await consumer.declare() }
    }

    /// The event log's database work, the relay and the consumers, in start order.
    public var services: [any Service] { log.services + [relay] + consumers }

    /// Publishing through this service's outbox.
    public var publisher: OutboxPublisher {
        OutboxPublisher(source: source, clock: log.clock, onCommit: { [relay] in relay.wakeup.signal() })
    }
}

extension HealthChecker {
    /// Adds an `eventLog` check: the shared event log (its SQLite file or PostgreSQL schema) answers.
    public mutating func addCheck(messaging: Messaging) {
        let log = messaging.log
        addCheck("eventLog") { try await log.database.ping() }
    }
}
