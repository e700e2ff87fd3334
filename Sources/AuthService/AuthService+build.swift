import Foundation
import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
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
    /// Proxies (the gateways, and what is in front of them) whose `X-Forwarded-For` names the client, as written
    /// (`TRUSTED_PROXIES`: comma-separated addresses and CIDR ranges, e.g. the pod network); a peer on loopback always.
    public var trustedProxies: String
    /// How often the signing key files are checked for a rotation (`AUTH_KEY_RELOAD_MS`, default 2000).
    public var keyReloadInterval: Duration

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
        self.trustedProxies = environment.string("TRUSTED_PROXIES", default: "")
        self.keyReloadInterval = .milliseconds(max(100, environment.int("AUTH_KEY_RELOAD_MS", default: 2000)))
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
    let ring = KeyRing(try await configuration.makeIssuer(logger: logger))
    let configuredClients = configuration.serviceClients
    let dataDirectory = settings.dataDirectory
    let clients: @Sendable () throws -> [String: String] = {
        try configuredClients ?? ServiceSecrets.loadOrCreate(dataDirectory: dataDirectory, services: ServiceName.shopServices.map(\.rawValue))
    }
    _ = try clients()
    // The auth service signs its own service token (to ask the user service about credentials).
    let ownToken = ServiceTokenSource.local(ring: ring, serviceID: ServiceName.auth.rawValue, scopes: Scope.granted(to: .auth))
    let users = ServiceClient(name: "user", baseURL: configuration.userURL, credentials: ownToken, registry: settings.registry)

    var health = HealthChecker()
    health.addCheck("signingKey") { _ = try await ring.issuer.issue(subject: "health", role: .service, email: nil) }
    let router = ServiceApplication.makeRouter(settings: settings, health: health, openAPI: OpenAPIDocuments.auth)
    let throttle = LoginThrottle(perAccount: configuration.loginFailuresPerAccount, perAddress: configuration.loginFailuresPerAddress)
    let proxies: TrustedProxies
    do {
        proxies = try TrustedProxies(parsing: configuration.trustedProxies)
    } catch {
        throw TrustedProxies.ParseError(description: "TRUSTED_PROXIES: \(error)")
    }
    LoginController(users: users, ring: ring, throttle: throttle, trustedProxies: proxies).addRoutes(to: router)
    ServiceLoginController(clients: clients, ring: ring).addRoutes(to: router)
    // A key from the environment changes with a redeploy; keys in the data folder change under a running service.
    let watcher: [any Service] =
        configuration.signingKey?.isEmpty == false
        ? [] : [SigningKeyWatcher(ring: ring, configuration: configuration, interval: configuration.keyReloadInterval, logger: logger)]
    return ServiceApplication.makeApplication(router: router, settings: settings, services: watcher, logger: logger)
}
