import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ShopContracts

/// Configuration of the inventory service.
public struct InventoryServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.inventory.rawValue, defaultPort: ServiceName.inventory.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
    }
}

/// Builds the inventory service: the product catalog with prices and stock.
public func buildInventoryService(_ configuration: InventoryServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    let messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    let verifier = configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger)
    var health = HealthChecker()
    health.addCheck(database: database)
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    InventoryController(repository: SQLProductRepository(database: database, events: messaging.publisher), verifier: verifier).addRoutes(to: router)
    var app = ServiceApplication.makeApplication(router: router, settings: settings, services: database.services + messaging.services, logger: logger)
    app.beforeServerStarts {
        try await database.prepare(migrations: InventoryMigrations.all + MessagingMigrations.all)
        try await messaging.prepare()
    }
    return app
}
