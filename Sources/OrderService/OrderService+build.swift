import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ShopContracts

/// Configuration of the order service.
public struct OrderServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    public var inventoryURL: String
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.order.rawValue, defaultPort: ServiceName.order.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.inventoryURL = environment.string(ServiceName.inventory.urlVariable, default: "http://127.0.0.1:\(ServiceName.inventory.port())")
    }
}

/// Builds the order service: orders priced from the catalog, per-user listing with pagination, and the status machine.
public func buildOrderService(_ configuration: OrderServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    var health = HealthChecker()
    health.addCheck(database: database)
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    OrderController(
        repository: SQLOrderRepository(database: database),
        catalog: ServiceClient(name: "inventory", baseURL: configuration.inventoryURL),
        verifier: verifier
    ).addRoutes(to: router)
    var app = ServiceApplication.makeApplication(router: router, settings: settings, services: database.services, logger: logger)
    app.beforeServerStarts { try await database.prepare(migrations: OrderMigrations.all) }
    return app
}
