import Hummingbird
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ServiceMessaging
import ShopContracts

/// The payment service as its executable, `shop serve` and the in-process mode build it.
public enum PaymentServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.payment

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = PaymentServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildPaymentService(configuration)
    }

    public static func migrate(environment: Environment) async throws {
        let settings = PaymentServiceConfiguration(environment: environment).settings
        let logger = ServiceApplication.logger(for: settings)
        try await Database.migrate(for: settings, PaymentMigrations.all + MessagingMigrations.all, logger: logger)
        try await EventLog.migrate(for: settings, logger: logger)
    }
}
