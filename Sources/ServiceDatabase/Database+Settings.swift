import Logging
import ServiceCore

extension Database {
    /// Opens the database a service's settings name: `DATABASE_URL`, or its own SQLite file in the data folder.
    public static func open(for settings: ServiceSettings, logger: Logger) async throws -> Database {
        try await open(
            try DatabaseConfiguration(url: settings.databaseURL, service: settings.name, dataDirectory: settings.dataDirectory), logger: logger)
    }
}

extension HealthChecker {
    /// Adds the `database` check: the database answers a trivial query.
    public mutating func addCheck(database: Database) {
        addCheck("database") { try await database.ping() }
    }
}
