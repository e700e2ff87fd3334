import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The inventory service as its executable, `shop serve` and the in-process mode build it.
public enum InventoryServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.inventory

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = InventoryServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildInventoryService(configuration)
    }
}
