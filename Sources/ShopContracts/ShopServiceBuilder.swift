import Hummingbird
import ServiceLifecycle

/// How one of the shop's services is built from an environment: what each service module offers its executable, `shop
/// serve` and the in-process mode, so an executable links only the service it runs.
public protocol ShopServiceBuilder {
    /// The service built.
    static var name: ServiceName { get }

    /// The runnable service, configured from `environment`; `onServerRunning` hears its bound port.
    static func build(environment: Environment, onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service
}
