import Hummingbird
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ServiceSaga
import ShopContracts

/// The order service as its executable, `shop serve` and the in-process mode build it.
public enum OrderServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.order

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = OrderServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildOrderService(configuration)
    }

    public static func migrate(environment: Environment) async throws {
        let settings = OrderServiceConfiguration(environment: environment).settings
        let logger = ServiceApplication.logger(for: settings)
        try await Database.migrate(for: settings, OrderMigrations.all + MessagingMigrations.all + SagaMigrations.all, logger: logger)
        try await EventLog.migrate(for: settings, logger: logger)
    }
}
