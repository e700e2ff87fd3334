import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The order service as its executable, `shop serve` and the in-process mode build it.
public enum OrderServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.order

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = OrderServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildOrderService(configuration)
    }
}
