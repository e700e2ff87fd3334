import AuthService
import GatewayService
import Hummingbird
import InventoryService
import NotificationService
import OrderService
import PaymentService
import ServiceLifecycle
import ShopContracts
import UserService

/// Builds any of the shop's services by name from an environment; what `shop serve` and the in-process mode run.
public enum ShopServices {
    /// A service named on the command line that is not built yet.
    public struct NotAvailable: Error, CustomStringConvertible {
        public var name: String
        public var description: String { "service '\(name)' is not available (built: \(ServiceName.implemented.map(\.rawValue).joined(separator: ", ")))" }
    }

    /// The runnable service `name`, configured from `environment`; `onServerRunning` hears its bound port.
    public static func build(
        _ name: ServiceName,
        environment: Environment,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws -> any Service {
        switch name {
        case .gateway:
            var configuration = GatewayConfiguration(environment: environment)
            configuration.onServerRunning = onServerRunning
            return try buildGateway(configuration)
        case .auth:
            var configuration = AuthServiceConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildAuthService(configuration)
        case .user:
            var configuration = UserServiceConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildUserService(configuration)
        case .inventory:
            var configuration = InventoryServiceConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildInventoryService(configuration)
        case .order:
            var configuration = OrderServiceConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildOrderService(configuration)
        case .notification:
            var configuration = NotificationServiceConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildNotificationService(configuration)
        case .payment:
            var configuration = PaymentServiceConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildPaymentService(configuration)
        }
    }
}
