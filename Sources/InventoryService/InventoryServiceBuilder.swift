import Hummingbird
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ShopContracts

/// The inventory service as its executable, `shop serve` and the in-process mode build it.
public enum InventoryServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.inventory

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = InventoryServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildInventoryService(configuration)
    }

    public static func migrate(environment: Environment) async throws {
        let settings = InventoryServiceConfiguration(environment: environment).settings
        let logger = ServiceApplication.logger(for: settings)
        try await Database.migrate(for: settings, InventoryMigrations.all + MessagingMigrations.all, logger: logger)
        try await EventLog.migrate(for: settings, logger: logger)
    }
}
