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

    /// The environment `service` runs with: the parent's, plus its port, data folder, database and every service's URL.
    public func environment(for service: ServiceName, inheriting base: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var environment = base
        environment["PORT"] = String(service.port(base: portBase))
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
        environment["GATEWAY_HEALTH_SERVICES"] = services.filter { $0 != .gateway }.map(\.rawValue).joined(separator: ",")
        environment.merge(extraEnvironment) { _, extra in extra }
        return environment
    }
}
