import Logging
import ServiceCore

extension Database {
    /// Opens the database a service's settings name: `DATABASE_URL`, or its own SQLite file in the data folder.
    public static func open(for settings: ServiceSettings, logger: Logger) async throws -> Database {
        try await open(
            try DatabaseConfiguration(url: settings.databaseURL, service: settings.name, dataDirectory: settings.dataDirectory), logger: logger)
    }

    /// Applies `migrations` to the database a service's settings name and closes it (`shop migrate`, a deployment's
    /// step before a rollout). Safe to run again, and beside a starting service: migrations are versioned and applied
    /// under a lock.
    public static func migrate(for settings: ServiceSettings, _ migrations: [Migration], logger: Logger) async throws {
        let configuration = try DatabaseConfiguration(url: settings.databaseURL, service: settings.name, dataDirectory: settings.dataDirectory)
        try await with(configuration, logger: logger) { database in try await database.prepare(migrations: migrations) }
    }
}

extension HealthChecker {
    /// Adds the `database` check: the database answers a trivial query.
    public mutating func addCheck(database: Database) {
        addCheck("database") { try await database.ping() }
    }
}
