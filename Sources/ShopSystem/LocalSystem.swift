import Foundation
import ShopContracts

/// The layout of a system on one machine: ports from a base, a data folder, one database per service, and the
/// environment each service process is started with.
public struct LocalSystem: Sendable {
    public var portBase: Int
    public var dataDirectory: String
    /// Empty for the embedded SQLite default, or a `postgres://` URL (each service then uses its own schema in it).
    public var databaseURL: String
    public var adminPassword: String
    public var logLevel: String
    public var services: [ServiceName]
    /// Settings added to every service's environment (e.g. `SAGA_LEASE_MS`), after the defaults.
    public var extraEnvironment: [String: String] = [:]
    /// Instances per service (default one). The first instance of a service listens on its well-known port; the others
    /// bind any free port and are found through the gateway's registry. Several gateways need ``redisURL`` (see
    /// ``checkSharedState()``); each registers itself, so `shop status` finds them.
    public var replicas: [ServiceName: Int] = [:]
    /// The gateway's rate limit (`100/60s`, `off`); nil: the gateway's default.
    public var rateLimit: String?
    /// How long infrastructure rows are kept (`RETENTION`, e.g. `30s`, `7d`); nil: the services' default.
    public var retention: String?
    /// The SMTP server the notification service mails through (`MAIL_SMTP_URL`); nil: `.eml` files in the data folder.
    public var smtpURL: String?
    /// Redis for shared state (`REDIS_URL`): the gateways' rate-limit counters and registry, the services' caches (second
    /// level and invalidations); nil: each gateway's memory, and caches in process invalidated through the event log.
    public var redisURL: String?

    public init(
        portBase: Int = 3000,
        dataDirectory: String = "./.shop",
        databaseURL: String = "",
        adminPassword: String,
        logLevel: String = "info",
        services: [ServiceName] = ServiceName.implemented
    ) {
        self.portBase = portBase
        self.dataDirectory = (dataDirectory as NSString).standardizingPath
        self.databaseURL = databaseURL
        self.adminPassword = adminPassword
        self.logLevel = logLevel
        self.services = services
    }

    /// `http://127.0.0.1:PORT` of `service`.
    public func url(of service: ServiceName) -> String { "http://127.0.0.1:\(service.port(base: portBase))" }

    /// The gateway's URL.
    public var gatewayURL: String { url(of: .gateway) }

    /// How many instances of `service` run.
    public func instances(of service: ServiceName) -> Int { max(1, replicas[service] ?? 1) }

    /// Refuses several gateways without a store they share: each would count its own rate limits (a client would get
    /// the limit once per gateway) and know only the instances that registered with it.
    public func checkSharedState() throws {
        if instances(of: .gateway) > 1, redisURL == nil { throw GatewaysNeedRedis(count: instances(of: .gateway)) }
    }

    public struct GatewaysNeedRedis: Error, CustomStringConvertible {
        public var count: Int
        public var description: String {
            "\(count) gateways need a store they share: add --redis redis://HOST:PORT (each gateway alone would count its own rate "
                + "limits and know only the instances registered with it)"
        }
    }

    /// Parses `order=2,payment=2`.
    public static func parseReplicas(_ text: String) throws -> [ServiceName: Int] {
        var replicas: [ServiceName: Int] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let service = ServiceName(rawValue: parts[0]), service.isShopService,
                let count = Int(parts[1]), (1...8).contains(count)
            else {
                throw InvalidReplicas(text: String(item))
            }
            replicas[service] = count
        }
        return replicas
    }

    public struct InvalidReplicas: Error, CustomStringConvertible {
        public var text: String
        public var description: String {
            "not a replica count: '\(text)' (expected e.g. order=2,payment=2 or gateway=2: a shop service, 1 to 8)"
        }
    }

    /// The environment `service` runs with: the parent's, plus its port, data folder, database and every service's URL.
    /// Every service registers with the gateway's registry; instance `replica` (from 0) past the first binds any free port.
    public func environment(
        for service: ServiceName, replica: Int = 0, inheriting base: [String: String] = ProcessInfo.processInfo.environment
    ) -> [String: String] {
        var environment = base
        environment["PORT"] = replica == 0 ? String(service.port(base: portBase)) : "0"
        // Every shop service registers with the gateway's registry; the provider is outside the shop.
        environment["REGISTRY_URL"] = service == .gateway || !service.isShopService ? nil : gatewayURL
        if service == .gateway, let rateLimit { environment["RATE_LIMIT"] = rateLimit }
        // The gateways' limits and registry, and every service's caches.
        if service.isShopService, let redisURL { environment["REDIS_URL"] = redisURL }
        if let retention { environment["RETENTION"] = retention }
        if service == .notification, let smtpURL { environment["MAIL_SMTP_URL"] = smtpURL }
        environment["HOST"] = "127.0.0.1"
        environment["DATA_DIR"] = dataDirectory
        environment["DATABASE_URL"] = databaseURL
        // One event log for the whole system: a SQLite file in the data folder, or schema eventlog_service.
        environment["EVENTLOG_URL"] = databaseURL
        environment["LOG_LEVEL"] = logLevel
        for other in ServiceName.allCases where other != .gateway {
            environment[other.urlVariable] = url(of: other)
        }
        if service == .user {
            environment["ADMIN_EMAIL"] = AdminAccount.email
            environment["ADMIN_PASSWORD"] = adminPassword
        } else {
            environment["ADMIN_PASSWORD"] = nil
        }
        environment["SHOP_ADMIN_PASSWORD"] = nil
        // One port per gateway on one machine: the services register with it there (a shell's setting for a
        // deployment must not split it).
        environment["GATEWAY_INTERNAL_PORT"] = nil
        environment["GATEWAY_HEALTH_SERVICES"] = services.filter { $0 != .gateway && $0.isShopService }.map(\.rawValue).joined(separator: ",")
        environment.merge(extraEnvironment) { _, extra in extra }
        return environment
    }
}
