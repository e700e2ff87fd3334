import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
import ShopContracts

extension ShopServiceBuilder {
    /// The runnable service, configured from `environment`; `onServerRunning` hears its bound port. With
    /// `REGISTRY_URL` set, a service also keeps itself registered there (``RegistryAgent``), under the address
    /// `ADVERTISE_HOST` (default: its `HOST`).
    public static func buildRegistered(
        environment: Environment,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws -> any Service {
        let registryURL = environment.string("REGISTRY_URL", default: "")
        guard name != .gateway, name.isShopService, !registryURL.isEmpty else {
            return try await build(environment: environment, onServerRunning: onServerRunning)
        }
        let port = AsyncStream<Int>.makeStream()
        let server = try await build(environment: environment) { bound in
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
}
