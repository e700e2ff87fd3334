import Logging
import ServiceDatabase
import ServiceLifecycle

extension TestDatabase {
    /// Opens a fresh database on this engine, runs its background work, applies `migrations`, calls `body`, and
    /// closes and drops it afterwards.
    public func withDatabase<T: Sendable>(migrations: [Migration] = [], _ body: @Sendable (Database) async throws -> T) async throws -> T {
        let url = freshURL()
        let database = try await Database.open(
            try DatabaseConfiguration(url: url, service: "test", dataDirectory: ""),
            logger: Logger(label: "test-db")
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for service in database.services {
                group.addTask { try await service.run() }
            }
            do {
                try await database.prepare(migrations: migrations)
                let result = try await body(database)
                await database.close()
                group.cancelAll()
                await TestDatabase.drop([url])
                return result
            } catch {
                await database.close()
                group.cancelAll()
                await TestDatabase.drop([url])
                throw error
            }
        }
    }
}
