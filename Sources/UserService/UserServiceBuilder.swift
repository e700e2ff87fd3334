import Hummingbird
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ShopContracts

/// The user service as its executable, `shop serve` and the in-process mode build it.
public enum UserServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.user

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = UserServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildUserService(configuration)
    }

    public static func migrate(environment: Environment) async throws {
        let settings = UserServiceConfiguration(environment: environment).settings
        let logger = ServiceApplication.logger(for: settings)
        try await Database.migrate(for: settings, UserMigrations.all + MessagingMigrations.all, logger: logger)
        try await EventLog.migrate(for: settings, logger: logger)
    }
}
