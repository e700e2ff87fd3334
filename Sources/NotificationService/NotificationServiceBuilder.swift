import Hummingbird
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ShopContracts

/// The notification service as its executable, `shop serve` and the in-process mode build it.
public enum NotificationServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.notification

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = NotificationServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildNotificationService(configuration)
    }

    public static func migrate(environment: Environment) async throws {
        let settings = NotificationServiceConfiguration(environment: environment).settings
        let logger = ServiceApplication.logger(for: settings)
        try await Database.migrate(for: settings, NotificationMigrations.all + MessagingMigrations.all, logger: logger)
        try await EventLog.migrate(for: settings, logger: logger)
    }
}
