import Foundation
import Hummingbird
import Logging
import ServiceAuth
import ServiceCache
import ServiceCore
import ServiceDatabase
import ServiceDiscovery
import ServiceHTTP
import ServiceMessaging
import ShopContracts

/// Configuration of the user service.
public struct UserServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var authURL: String
    public var orderURL: String
    /// This service's client secret (`SERVICE_SECRET`); nil: the data folder's secrets file.
    public var serviceSecret: String?
    /// The admin account ensured at start (`ADMIN_EMAIL`, `ADMIN_PASSWORD`); none when the password is unset.
    public var adminEmail: String
    public var adminPassword: String?
    /// bcrypt cost (`BCRYPT_COST`, 4…31; default 10).
    public var bcryptCost: UInt8
    /// Verifier to use instead of fetching keys from `authURL` (in-process wiring, tests).
    public var tokenVerifier: TokenVerifier?

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.user.rawValue, defaultPort: ServiceName.user.port(), environment: environment)
        self.authURL = environment.string(ServiceName.auth.urlVariable, default: "http://127.0.0.1:\(ServiceName.auth.port())")
        self.orderURL = environment.string(ServiceName.order.urlVariable, default: "http://127.0.0.1:\(ServiceName.order.port())")
        self.serviceSecret = environment.get("SERVICE_SECRET")
        self.adminEmail = environment.string("ADMIN_EMAIL", default: "admin@shop.local")
        self.adminPassword = environment.get("ADMIN_PASSWORD")
        self.bcryptCost = UInt8(clamping: max(4, min(31, environment.int("BCRYPT_COST", default: 10))))
    }
}

/// Builds the user service: signup, profiles, credentials checks for auth, and `{user, orders}` composition.
public func buildUserService(_ configuration: UserServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let database = try await Database.open(for: settings, logger: logger)
    let messaging = try await Messaging.open(settings: settings, database: database, logger: logger)
    let (caches, cacheServices) = try messaging.caches(settings: settings, logger: logger)
    let repository = SQLUserRepository(database: database, events: messaging.publisher)
    let hasher = PasswordHasher(cost: configuration.bcryptCost)
    let verifier =
        configuration.tokenVerifier ?? .remote(authURL: configuration.authURL, logger: logger, caches: settings.cacheEnabled ? caches : nil)

    var health = HealthChecker()
    health.addCheck(database: database)
    health.addCheck(messaging: messaging)
    let router = ServiceApplication.makeRouter(settings: settings, health: health, openAPI: OpenAPIDocuments.user)
    UserController(
        repository: repository,
        hasher: hasher,
        // Calls carry the caller's token; the service's own token is for finding the order instances in the registry.
        orders: ServiceClient(
            name: "order", baseURL: configuration.orderURL,
            credentials: settings.registryURL.isEmpty
                ? nil
                : try ServiceTokenSource.forService(
                    ServiceName.user.rawValue, authURL: configuration.authURL, secret: configuration.serviceSecret,
                    dataDirectory: settings.dataDirectory, allServices: ServiceName.shopServices.map(\.rawValue)
                ),
            registry: settings.registry
        ),
        verifier: verifier,
        users: caches.cache("users", configuration: CacheConfiguration(timeToLive: .seconds(300), sharedLevel: false, enabled: settings.cacheEnabled))
    ).addRoutes(to: router)
    CredentialsController(repository: repository, hasher: hasher, verifier: verifier).addRoutes(to: router)

    var app = ServiceApplication.makeApplication(
        router: router, settings: settings,
        services: database.services + messaging.services + cacheServices + [try messaging.pruner(settings: settings)],
        logger: logger
    )
    app.beforeServerStarts {
        try await database.prepare(migrations: UserMigrations.all + MessagingMigrations.all)
        try await messaging.prepare()
        if let password = configuration.adminPassword, !password.isEmpty {
            try await AdminAccount.ensure(email: configuration.adminEmail, password: password, repository: repository, hasher: hasher, logger: logger)
        }
    }
    return app
}

/// Creates the admin account on first start; an existing account is left as it is.
enum AdminAccount {
    static func ensure(email: String, password: String, repository: some UserRepository, hasher: PasswordHasher, logger: Logger) async throws {
        guard try await repository.find(email: email) == nil else { return }
        let now = Timestamp.now()
        let admin = User(
            id: UUID().uuidString.lowercased(),
            email: email.lowercased(),
            name: "Administrator",
            passwordHash: try await hasher.hash(password),
            role: .admin,
            profile: nil,
            createdAt: now,
            updatedAt: now
        )
        do {
            try await repository.create(admin)
            logger.info("Created the admin account", metadata: ["email": "\(email)"])
        } catch UserRepositoryError.duplicateEmail {
            // Another replica created it first.
        }
    }
}
