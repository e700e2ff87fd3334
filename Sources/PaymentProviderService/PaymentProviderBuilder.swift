import Hummingbird
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ShopContracts

/// The payment provider sandbox as its executable, `shop serve` and the in-process mode build it.
public enum PaymentProviderBuilder: ShopServiceBuilder {
    public static let name = ServiceName.paymentProvider

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = PaymentProviderConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildPaymentProvider(configuration)
    }

    public static func migrate(environment: Environment) async throws {
        let settings = PaymentProviderConfiguration(environment: environment).settings
        try await Database.migrate(for: settings, LedgerMigrations.all, logger: ServiceApplication.logger(for: settings))
    }
}
