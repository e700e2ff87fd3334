import Foundation
import SQLKit
import ServiceDatabase
import ServiceTesting
import Testing

@Suite struct DatabaseTests {
    static let migrations = [
        Migration(version: 1, name: "items", statements: ["CREATE TABLE items (id TEXT PRIMARY KEY, qty BIGINT NOT NULL)"]),
        Migration(version: 2, name: "notes", statements: ["ALTER TABLE items ADD COLUMN note TEXT"]),
    ]

    struct Boom: Error {}

    func count(_ database: Database) async throws -> Int {
        try await database.withConnection { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM items").first()?.decode(column: "n", as: Int.self) ?? -1
        }
    }

    @Test(arguments: TestDatabase.available)
    func migrationsApplyInOrderOnce(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: Self.migrations) { database in
            #expect(try await database.appliedMigrationVersions() == [1, 2])
            // A second start applies nothing again (it would fail: the table and column exist).
            try await database.prepare(migrations: Self.migrations)
            #expect(try await database.appliedMigrationVersions() == [1, 2])
            try await database.withConnection { sql in
                try await sql.raw("INSERT INTO items (id, qty, note) VALUES (\(bind: "a"), \(bind: 1), \(bind: "n"))").run()
            }
            #expect(try await count(database) == 1)
        }
    }

    @Test(arguments: TestDatabase.available)
    func aFailingMigrationLeavesNoTrace(_ engine: TestDatabase) async throws {
        let broken =
            Self.migrations + [
                Migration(version: 3, name: "broken") { sql in
                    try await sql.raw("CREATE TABLE half (id TEXT)").run()
                    throw Boom()
                }
            ]
        try await engine.withDatabase(migrations: Self.migrations) { database in
            await #expect(throws: Boom.self) { try await database.prepare(migrations: broken) }
            let versions = try await database.appliedMigrationVersions()
            #expect(versions == [1, 2])
            // The table the broken migration created was rolled back with it.
            await #expect(throws: (any Error).self) {
                try await database.withConnection { sql in try await sql.raw("SELECT * FROM half").run() }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func transactionsCommitOrRollBackWhole(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: Self.migrations) { database in
            try await database.transaction { sql in
                try await sql.raw("INSERT INTO items (id, qty) VALUES (\(bind: "a"), \(bind: 1))").run()
                try await sql.raw("INSERT INTO items (id, qty) VALUES (\(bind: "b"), \(bind: 2))").run()
            }
            #expect(try await count(database) == 2)
            await #expect(throws: Boom.self) {
                try await database.transaction { sql in
                    try await sql.raw("INSERT INTO items (id, qty) VALUES (\(bind: "c"), \(bind: 3))").run()
                    throw Boom()
                }
            }
            #expect(try await count(database) == 2)
        }
    }

    @Test(arguments: TestDatabase.available)
    func uniqueViolationsAreRecognised(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: Self.migrations) { database in
            try await database.withConnection { sql in try await sql.raw("INSERT INTO items (id, qty) VALUES ('a', 1)").run() }
            do {
                try await database.withConnection { sql in try await sql.raw("INSERT INTO items (id, qty) VALUES ('a', 2)").run() }
                Issue.record("a duplicate key was accepted")
            } catch {
                #expect(Database.isUniqueViolation(error))
            }
            #expect(!Database.isUniqueViolation(Boom()))
        }
    }

    @Test(arguments: TestDatabase.available)
    func concurrentTransactionsDoNotLoseUpdates(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: Self.migrations) { database in
            try await database.withConnection { sql in try await sql.raw("INSERT INTO items (id, qty) VALUES ('counter', 0)").run() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await database.transaction { sql in
                            try await sql.raw("UPDATE items SET qty = qty + 1 WHERE id = 'counter'").run()
                        }
                    }
                }
                try await group.waitForAll()
            }
            let value = try await database.withConnection { sql in
                try await sql.raw("SELECT qty FROM items WHERE id = 'counter'").first()?.decode(column: "qty", as: Int.self)
            }
            #expect(value == 20)
        }
    }

    @Test func configurationParsesEveryForm() throws {
        #expect(try DatabaseConfiguration(url: "", service: "user", dataDirectory: "/data") == .sqliteFile(path: "/data/user.sqlite"))
        #expect(try DatabaseConfiguration(url: "sqlite::memory:", service: "user", dataDirectory: "") == .sqliteMemory)
        #expect(try DatabaseConfiguration(url: "sqlite:///var/x.db", service: "user", dataDirectory: "") == .sqliteFile(path: "/var/x.db"))
        let postgres = try DatabaseConfiguration(url: "postgres://bob:s%40cret@db.local:6543/shop", service: "order", dataDirectory: "")
        guard case .postgres(let settings) = postgres else {
            Issue.record("not postgres")
            return
        }
        #expect(settings.host == "db.local" && settings.port == 6543 && settings.username == "bob" && settings.password == "s@cret")
        #expect(settings.database == "shop" && settings.schema == "order_service")
        let custom = try DatabaseConfiguration(url: "postgres://u@h/db?schema=custom_1", service: "order", dataDirectory: "")
        #expect((custom == .postgres(.init(host: "h", port: 5432, username: "u", password: nil, database: "db", schema: "custom_1"))))
        #expect(throws: DatabaseConfiguration.InvalidURL.self) { try DatabaseConfiguration(url: "mysql://x", service: "a", dataDirectory: "") }
        #expect(throws: DatabaseConfiguration.InvalidURL.self) {
            try DatabaseConfiguration(url: "postgres://u@h/db?schema=x;drop", service: "a", dataDirectory: "")
        }
    }

    @Test func sqliteFilesPersistAcrossReopen() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dbtest-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = try DatabaseConfiguration(url: "", service: "svc", dataDirectory: directory)
        let first = try await Database.open(configuration, logger: .init(label: "t"))
        try await first.prepare(migrations: Self.migrations)
        try await first.transaction { sql in try await sql.raw("INSERT INTO items (id, qty) VALUES ('kept', 7)").run() }
        await first.close()
        let second = try await Database.open(configuration, logger: .init(label: "t"))
        try await second.prepare(migrations: Self.migrations)
        #expect(try await count(second) == 1)
        #expect(try await second.appliedMigrationVersions() == [1, 2])
        await second.close()
    }
}
