import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The user service as its executable, `shop serve` and the in-process mode build it.
public enum UserServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.user

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = UserServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildUserService(configuration)
    }
}
