import Hummingbird
import ServiceLifecycle

/// How one of the shop's services is built from an environment: what each service module offers its executable, `shop
/// serve` and the in-process mode, so an executable links only the service it runs.
public protocol ShopServiceBuilder {
    /// The service built.
    static var name: ServiceName { get }

    /// The runnable service, configured from `environment`; `onServerRunning` hears its bound port.
    static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service

    /// Applies the service's database migrations (and the shared event log's) and returns, configured from
    /// `environment` (`shop migrate`). A service also applies them when it starts; this is for a deployment that
    /// wants them done before a rollout.
    static func migrate(environment: Environment) async throws
}

extension ShopServiceBuilder {
    /// A service without a database has nothing to migrate.
    public static func migrate(environment: Environment) async throws {}
}
