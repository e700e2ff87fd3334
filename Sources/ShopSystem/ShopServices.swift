import AuthService
import GatewayService
import InventoryService
import Logging
import NotificationService
import OrderService
import PaymentProviderService
import PaymentService
import ServiceLifecycle
import ShopContracts
import ShopRuntime
import UserService

/// Every service of the shop, by name: what `shop serve`, `shop up` and the benchmarks run (one executable per service
/// links only its own module instead).
public enum ShopServices {
    /// The builder of service `name`.
    public static func builder(_ name: ServiceName) -> any ShopServiceBuilder.Type {
        switch name {
        case .gateway: GatewayBuilder.self
        case .auth: AuthServiceBuilder.self
        case .user: UserServiceBuilder.self
        case .inventory: InventoryServiceBuilder.self
        case .order: OrderServiceBuilder.self
        case .notification: NotificationServiceBuilder.self
        case .payment: PaymentServiceBuilder.self
        case .paymentProvider: PaymentProviderBuilder.self
        }
    }
}

extension ServiceMain {
    /// Runs the services `names` in this process (`shop serve`).
    public static func run(_ names: [ServiceName]) async throws {
        try await run(names.map(ShopServices.builder))
    }
}

extension ServiceRunner {
    /// Runs the services `services` by name, each with its own environment (`shop up --in-process`, the benchmarks).
    public static func run(
        _ services: [(name: ServiceName, environment: [String: String])], extra: [any Service] = [], logger: Logger
    ) async throws {
        try await run(services.map { (ShopServices.builder($0.name), $0.environment) }, extra: extra, logger: logger)
    }
}
