import AuthService
import GatewayService
import Hummingbird
import InventoryService
import NotificationService
import OrderService
import PaymentProviderService
import PaymentService
import ServiceAuth
import ServiceCore
import ServiceLifecycle
import ShopContracts
import UserService
import ServiceHTTP
import ServiceDiscovery

/// Builds any of the shop's services by name from an environment; what `shop serve` and the in-process mode run.
public enum ShopServices {
    /// A service named on the command line that is not built yet.
    public struct NotAvailable: Error, CustomStringConvertible {
        public var name: String
        public var description: String { "service '\(name)' is not available (built: \(ServiceName.implemented.map(\.rawValue).joined(separator: ", ")))" }
    }

    /// The runnable service `name`, configured from `environment`; `onServerRunning` hears its bound port. With
    /// `REGISTRY_URL` set, a service also keeps itself registered there (``RegistryAgent``), under the address
    /// `ADVERTISE_HOST` (default: its `HOST`).
    public static func build(
        _ name: ServiceName,
        environment: Environment,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws -> any Service {
        let registryURL = environment.string("REGISTRY_URL", default: "")
        guard name != .gateway, name.isShopService, !registryURL.isEmpty else {
            return try await buildOne(name, environment: environment, onServerRunning: onServerRunning)
        }
        let port = AsyncStream<Int>.makeStream()
        let server = try await buildOne(name, environment: environment) { bound in
            port.continuation.yield(bound)
            port.continuation.finish()
            await onServerRunning(bound)
        }
        let settings = ServiceSettings(name: name.rawValue, defaultPort: name.port(), environment: environment)
        let authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        let agent = RegistryAgent(
            registryURL: registryURL, name: name.rawValue, host: environment.string("ADVERTISE_HOST", default: settings.host),
            instanceID: environment.string("INSTANCE_ID", default: ""),
            credentials: try ServiceTokenSource.forService(
                name.rawValue, authURL: authURL, secret: environment.get("SERVICE_SECRET"), dataDirectory: settings.dataDirectory,
                allServices: ServiceName.shopServices.map(\.rawValue)
            ),
            logger: ServiceApplication.logger(for: settings),
            port: {
                var iterator = port.stream.makeAsyncIterator()
                return await iterator.next()
            }
        )
        return ServiceSet([server, agent])
    }

    static func buildOne(
        _ name: ServiceName,
        environment: Environment,
        onServerRunning: @escaping @Sendable (Int) async -> Void
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
        case .paymentProvider:
            var configuration = PaymentProviderConfiguration(environment: environment)
            configuration.settings.onServerRunning = onServerRunning
            return try await buildPaymentProvider(configuration)
        }
    }
}
