import Hummingbird
import ServiceLifecycle
import ShopContracts

/// The notification service as its executable, `shop serve` and the in-process mode build it.
public enum NotificationServiceBuilder: ShopServiceBuilder {
    public static let name = ServiceName.notification

    public static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service {
        var configuration = NotificationServiceConfiguration(environment: environment)
        configuration.settings.onServerRunning = onServerRunning
        return try await buildNotificationService(configuration)
    }
}
