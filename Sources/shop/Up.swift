import ArgumentParser
import Foundation
import Logging
import ServiceAuth
import ServiceCore
import ServiceLifecycle
import ServiceMail
import ServiceRedis
import ServiceResilience
import ShopContracts
import ShopRuntime
import ShopSystem

/// `shop up`: start every service, wait until ready, seed the demo catalog and the admin account, print the gateway URL.
struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the whole system on this machine.")

    @Option(name: .customLong("data-dir"), help: "Folder for databases, keys and the admin password.")
    var dataDirectory = "./.shop"

    @Option(help: "Gateway port; the services use the next six ports in the order user, order, payment, auth, inventory, notification.")
    var portBase = 3000

    @Option(help: "A postgres:// URL to run every service on PostgreSQL (one schema each) instead of SQLite files.")
    var database = ""

    @Flag(help: "Run all services in this one process (a modular monolith) instead of one process each.")
    var inProcess = false

    @Option(help: "Log level of the services (trace, debug, info, notice, warning, error).")
    var logLevel = "info"

    @Option(
        help:
            "Instances per service, e.g. order=2,payment=2 (found through the gateway's registry and balanced); gateway=2 runs a second gateway on a free port (needs --redis)."
    )
    var replicas = ""

    @Option(help: "The gateway's rate limit per client and route group, e.g. 100/60s, or off.")
    var rateLimit = "100/60s"

    @Option(help: "How long handled events, inbox ids, finished sagas and idempotency records are kept, e.g. 30s, 12h, 7d (default 7d; RETENTION).")
    var retention: String?

    @Option(
        help: "Deliver mail through this SMTP server, e.g. smtp://user:password@host:587?starttls=required (default: .eml files in the data folder).")
    var smtp: String?

    @Option(
        help:
            "Share state through this Redis (REDIS_URL): the gateways' rate limits and registry, the services' caches; e.g. redis://127.0.0.1:6379/0 or rediss://user:password@host:6380."
    )
    var redis: String?

    func validate() throws {
        if let smtp {
            do { _ = try SMTPConfiguration(url: smtp) } catch { throw ValidationError("--smtp: \(error)") }
        }
        var system = LocalSystem(adminPassword: "")
        system.replicas = try LocalSystem.parseReplicas(replicas)
        system.redisURL = redis
        do { try system.checkSharedState() } catch { throw ValidationError("--replicas: \(error)") }
        if let redis {
            do { _ = try RedisConfiguration(url: redis) } catch { throw ValidationError("--redis: \(error)") }
        }
        if let retention, Duration.parse(retention) == nil {
            throw ValidationError("--retention is not a duration: '\(retention)' (expected e.g. 30s, 15m, 12h, 7d)")
        }
        do { _ = try RateLimit.parse(rateLimit) } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrapJSON(service: "shop", level: level)
        var logger = Logger(label: "shop")
        logger.logLevel = level

        let admin = try AdminAccount.password(dataDirectory: dataDirectory)
        // The services' client secrets, made once before any service starts (each reads its own; auth reads all).
        _ = try ServiceSecrets.loadOrCreate(dataDirectory: dataDirectory, services: ServiceName.shopServices.map(\.rawValue))
        var system = LocalSystem(
            portBase: portBase,
            dataDirectory: dataDirectory,
            databaseURL: database.isEmpty ? (ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "") : database,
            adminPassword: admin.password,
            logLevel: level.rawValue
        )
        system.replicas = try LocalSystem.parseReplicas(replicas)
        system.rateLimit = rateLimit
        system.retention = retention
        system.smtpURL = smtp
        system.redisURL = redis
        try system.checkSharedState()
        let announcer = StartupAnnouncer(system: system, adminPasswordGenerated: admin.generated, logger: logger)
        if inProcess {
            try await ServiceRunner.run(system.services.map { ($0, system.environment(for: $0)) }, extra: [announcer], logger: logger)
        } else {
            let supervisor = Supervisor(system: system, logger: logger)
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [
                        .init(service: supervisor),
                        .init(service: announcer, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup),
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
        }
    }
}

/// Waits for the system to be ready, seeds it, prints where it is, then waits for shutdown.
struct StartupAnnouncer: Service {
    let system: LocalSystem
    let adminPasswordGenerated: Bool
    let logger: Logger

    func run() async throws {
        try await Readiness.wait(for: system.services.map { system.url(of: $0) }, timeout: .seconds(120))
        let created = try await DemoCatalog.seed(gatewayURL: system.gatewayURL, adminEmail: AdminAccount.email, adminPassword: system.adminPassword)
        var lines = [
            "",
            "Shop is up: \(system.gatewayURL)",
            "  services: "
                + system.services.map { service in
                    let extra = system.instances(of: service) - 1
                    return "\(service.rawValue) :\(service.port(base: system.portBase))" + (extra > 0 ? " (+\(extra) on free ports)" : "")
                }.joined(separator: ", "),
            "  registry: \(system.gatewayURL)/services (every instance registers, gateways too: shop status lists them; rate limit \(system.rateLimit ?? "100/60s")"
                + (system.redisURL.flatMap { try? RedisConfiguration(url: $0).redacted }.map { ", counted in \($0)" } ?? "") + ")",
            "  caches:   "
                + (system.redisURL.flatMap { try? RedisConfiguration(url: $0).redacted }.map { "in process, second level and invalidations in \($0)" }
                    ?? "in process, invalidated across instances through the event log"),
            "  database: " + (system.databaseURL.isEmpty ? "SQLite files in \(system.dataDirectory)" : "PostgreSQL (one schema per service)"),
            "  payments: sandbox provider on \(system.url(of: .paymentProvider)) (its ledger and secret key in the data folder)",
            "  mail:     " + (system.smtpURL.flatMap { try? SMTPConfiguration(url: $0).redacted } ?? ".eml files in \(system.dataDirectory)/mail"),
            "  catalog:  \(DemoCatalog.products.count) demo products (\(created) created now), e.g. product-1 at 29.99",
        ]
        if adminPasswordGenerated {
            lines.append(
                "  admin:    \(AdminAccount.email) / \(system.adminPassword)  (generated now, kept in \(system.dataDirectory)/admin-password)")
        } else {
            lines.append("  admin:    \(AdminAccount.email) (password from SHOP_ADMIN_PASSWORD or \(system.dataDirectory)/admin-password)")
        }
        lines.append("  try:      curl \(system.gatewayURL)/health")
        lines.append("Press Ctrl-C to stop.")
        // Written unbuffered, so the banner shows at once even when standard output is a pipe.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try? await gracefulShutdown()
    }
}
