import Foundation
import Hummingbird
import ServiceAuth
import ServiceCore
import ShopContracts

/// Configuration of the auth service.
public struct AuthServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var userURL: String
    /// Base64url Ed25519 private key (`AUTH_SIGNING_KEY`); when unset the key is generated into the data folder.
    public var signingKey: String?
    /// Lifetime of user tokens in seconds (`TOKEN_TTL_SECONDS`, default 3600).
    public var tokenLifetimeSeconds: Int
    /// Lifetime of service tokens in seconds (`SERVICE_TOKEN_TTL_SECONDS`, default 900).
    public var serviceTokenLifetimeSeconds: Int
    /// The services' client secrets (`SERVICE_CLIENTS=id=secret,…`); nil: the data folder's secrets file.
    public var serviceClients: [String: String]?

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.auth.rawValue, defaultPort: ServiceName.auth.port(), environment: environment)
        self.userURL = environment.string(ServiceName.user.urlVariable, default: "http://127.0.0.1:\(ServiceName.user.port())")
        self.signingKey = environment.get("AUTH_SIGNING_KEY")
        self.tokenLifetimeSeconds = environment.int("TOKEN_TTL_SECONDS", default: 3600)
        self.serviceTokenLifetimeSeconds = environment.int("SERVICE_TOKEN_TTL_SECONDS", default: 900)
        self.serviceClients = environment.get("SERVICE_CLIENTS").map(ServiceSecrets.parse)
    }

    /// Where the generated signing key is kept.
    public var signingKeyPath: String {
        (settings.dataDirectory as NSString).appendingPathComponent("auth/signing-key")
    }
}

/// Builds the auth service: login (credentials checked by the user service), service tokens (client credentials) and
/// the JWKS endpoint.
public func buildAuthService(_ configuration: AuthServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let key = try SigningKey.loadOrCreate(environmentValue: configuration.signingKey, path: configuration.signingKeyPath, logger: logger)
    let issuer = await TokenIssuer(
        signingKey: key, userTokenLifetime: .seconds(configuration.tokenLifetimeSeconds),
        serviceTokenLifetime: .seconds(configuration.serviceTokenLifetimeSeconds)
    )
    let configuredClients = configuration.serviceClients
    let dataDirectory = settings.dataDirectory
    let clients: @Sendable () throws -> [String: String] = {
        try configuredClients ?? ServiceSecrets.loadOrCreate(dataDirectory: dataDirectory, services: ServiceName.allCases.map(\.rawValue))
    }
    _ = try clients()
    // The auth service signs its own service token (to ask the user service about credentials).
    let ownToken = ServiceTokenSource.local(issuer: issuer, serviceID: ServiceName.auth.rawValue, scopes: Scope.granted(to: .auth))
    let users = ServiceClient(name: "user", baseURL: configuration.userURL, credentials: ownToken, registry: settings.registry)

    var health = HealthChecker()
    health.addCheck("signingKey") { _ = try await issuer.issue(subject: "health", role: .service, email: nil) }
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    LoginController(users: users, issuer: issuer).addRoutes(to: router)
    ServiceLoginController(clients: clients, issuer: issuer).addRoutes(to: router)
    return ServiceApplication.makeApplication(router: router, settings: settings, logger: logger)
}
