import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The gateway as its executable, `shop serve` and the in-process mode build it.
public enum GatewayBuilder: ShopServiceBuilder {
    public static let name = ServiceName.gateway

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = GatewayConfiguration(environment: environment)
        configuration.onServerRunning = onServerRunning
        return try buildGateway(configuration)
    }
}
