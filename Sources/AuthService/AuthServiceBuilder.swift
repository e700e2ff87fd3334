import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The auth service as its executable, `shop serve` and the in-process mode build it.
public enum AuthServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.auth

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = AuthServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildAuthService(configuration)
    }
}
