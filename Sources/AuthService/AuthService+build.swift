import Foundation
import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceResilience
import ShopContracts

/// Configuration of the auth service.
public struct AuthServiceConfiguration: Sendable {
    public var settings: ServiceSettings
    public var userURL: String
    /// Base64url Ed25519 private key (`AUTH_SIGNING_KEY`); when unset the key is generated into the data folder.
    public var signingKey: String?
    /// Keys retired by a rotation (`AUTH_RETIRED_SIGNING_KEYS`: their public `x`, base64url, comma-separated, each
    /// optionally `@<unix time retired>`); when unset, the data folder's `auth/signing-key.retired` (written by
    /// `shop keys rotate`).
    public var retiredSigningKeys: String?
    /// Lifetime of user tokens in seconds (`TOKEN_TTL_SECONDS`, default 3600).
    public var tokenLifetimeSeconds: Int
    /// Lifetime of service tokens in seconds (`SERVICE_TOKEN_TTL_SECONDS`, default 900).
    public var serviceTokenLifetimeSeconds: Int
    /// The services' client secrets (`SERVICE_CLIENTS=id=secret,…`); nil: the data folder's secrets file.
    public var serviceClients: [String: String]?
    /// Failed logins allowed per account and per client address before further attempts wait
    /// (`LOGIN_FAILURES_PER_ACCOUNT`, default 5/15m; `LOGIN_FAILURES_PER_ADDRESS`, default 50/15m).
    public var loginFailuresPerAccount: RateLimit
    public var loginFailuresPerAddress: RateLimit
    /// Addresses of proxies (the gateway's) whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`, comma-separated;
    /// loopback always).
    public var trustedProxies: Set<String>

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.auth.rawValue, defaultPort: ServiceName.auth.port(), environment: environment)
        self.userURL = environment.string(ServiceName.user.urlVariable, default: "http://127.0.0.1:\(ServiceName.user.port())")
        self.signingKey = environment.get("AUTH_SIGNING_KEY")
        self.retiredSigningKeys = environment.get("AUTH_RETIRED_SIGNING_KEYS")
        self.tokenLifetimeSeconds = environment.int("TOKEN_TTL_SECONDS", default: 3600)
        self.serviceTokenLifetimeSeconds = environment.int("SERVICE_TOKEN_TTL_SECONDS", default: 900)
        self.serviceClients = environment.get("SERVICE_CLIENTS").map(ServiceSecrets.parse)
        self.loginFailuresPerAccount = Self.rate(environment.get("LOGIN_FAILURES_PER_ACCOUNT")) ?? RateLimit(limit: 5, window: .seconds(900))
        self.loginFailuresPerAddress = Self.rate(environment.get("LOGIN_FAILURES_PER_ADDRESS")) ?? RateLimit(limit: 50, window: .seconds(900))
        self.trustedProxies = Set((environment.get("TRUSTED_PROXIES") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    }

    /// A limit like `5/15m`; nil when unset or unreadable (the default applies), never unlimited.
    static func rate(_ text: String?) -> RateLimit? {
        text.flatMap { try? RateLimit.parse($0) }
    }

    /// Where the generated signing key is kept.
    public var signingKeyPath: String { Self.signingKeyPath(dataDirectory: settings.dataDirectory) }

    /// Where the signing key of the system whose data folder is `dataDirectory` is kept (`shop keys rotate` too).
    public static func signingKeyPath(dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent("auth/signing-key")
    }

    /// Where retired keys are kept (a line each: the key and when it was retired).
    public var retiredSigningKeysPath: String { signingKeyPath + ".retired" }
}

/// Builds the auth service: login (credentials checked by the user service), service tokens (client credentials) and
/// the JWKS endpoint.
public func buildAuthService(_ configuration: AuthServiceConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let key = try SigningKey.loadOrCreate(environmentValue: configuration.signingKey, path: configuration.signingKeyPath, logger: logger)
    // A retired key is published as long as a token it signed may live.
    let keepRetired = Duration.seconds(max(configuration.tokenLifetimeSeconds, configuration.serviceTokenLifetimeSeconds))
    let retired = try SigningKey.loadRetired(
        environmentValue: configuration.retiredSigningKeys, path: configuration.retiredSigningKeysPath, keepFor: keepRetired
    )
    let issuer = await TokenIssuer(
        signingKey: key, retiredKeys: retired, userTokenLifetime: .seconds(configuration.tokenLifetimeSeconds),
        serviceTokenLifetime: .seconds(configuration.serviceTokenLifetimeSeconds)
    )
    let configuredClients = configuration.serviceClients
    let dataDirectory = settings.dataDirectory
    let clients: @Sendable () throws -> [String: String] = {
        try configuredClients ?? ServiceSecrets.loadOrCreate(dataDirectory: dataDirectory, services: ServiceName.shopServices.map(\.rawValue))
    }
    _ = try clients()
    // The auth service signs its own service token (to ask the user service about credentials).
    let ownToken = ServiceTokenSource.local(issuer: issuer, serviceID: ServiceName.auth.rawValue, scopes: Scope.granted(to: .auth))
    let users = ServiceClient(name: "user", baseURL: configuration.userURL, credentials: ownToken, registry: settings.registry)

    var health = HealthChecker()
    health.addCheck("signingKey") { _ = try await issuer.issue(subject: "health", role: .service, email: nil) }
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    let throttle = LoginThrottle(perAccount: configuration.loginFailuresPerAccount, perAddress: configuration.loginFailuresPerAddress)
    LoginController(users: users, issuer: issuer, throttle: throttle, trustedProxies: configuration.trustedProxies).addRoutes(to: router)
    ServiceLoginController(clients: clients, issuer: issuer).addRoutes(to: router)
    return ServiceApplication.makeApplication(router: router, settings: settings, logger: logger)
}
