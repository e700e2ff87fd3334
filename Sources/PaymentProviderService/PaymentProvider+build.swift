import Hummingbird
import ServiceCore
import ServiceDatabase
import ServiceHTTP

/// Builds the sandbox payment provider: its API over a ledger in its own database (a SQLite file in the data folder,
/// or its own PostgreSQL schema), and the pruning of idempotency records older than a day (or the retention, if longer).
public func buildPaymentProvider(_ configuration: PaymentProviderConfiguration) async throws -> some ApplicationProtocol {
    let settings = configuration.settings
    let logger = ServiceApplication.logger(for: settings)
    let secretKey = try ProviderKey.loadOrCreate(configured: configuration.secretKey, dataDirectory: settings.dataDirectory)
    let database = try await Database.open(for: settings, logger: logger)
    let ledger = Ledger(database: database)
    var health = HealthChecker()
    health.addCheck(database: database)
    let router = ServiceApplication.makeRouter(settings: settings, health: health)
    ProviderController(ledger: ledger, secretKey: secretKey, hang: configuration.hang).addRoutes(to: router)
    let keys = PruneJob(name: "provider idempotency keys", database: database) { cutoffs in
        ["idempotency_keys": try await ledger.pruneKeys(before: min(cutoffs.retainedSince, cutoffs.now - 24 * 3_600_000))]
    }
    var app = ServiceApplication.makeApplication(
        router: router, settings: settings,
        services: database.services + [Pruner(policy: try RetentionPolicy(settings: settings), jobs: [keys], logger: logger)], logger: logger
    )
    app.beforeServerStarts {
        try await database.prepare(migrations: LedgerMigrations.all)
    }
    return app
}
