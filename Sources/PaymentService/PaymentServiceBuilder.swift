import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The payment service as its executable, `shop serve` and the in-process mode build it.
public enum PaymentServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.payment

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = PaymentServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildPaymentService(configuration)
    }
}
