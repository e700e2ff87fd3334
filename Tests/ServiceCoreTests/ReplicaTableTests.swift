import SQLKit
import ServiceDatabase
import ServiceMessaging
import ServiceTesting
import Testing

@Suite struct ReplicaTableTests {
    static let migrations = [
        Migration(version: 1, name: "people", statements: ["CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT NOT NULL, updated_at TEXT NOT NULL)"])
    ]

    @Test(arguments: TestDatabase.available)
    func theNewestChangeWinsWhateverTheOrderOfArrival(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: Self.migrations) { database in
            let people = ReplicaTable("people", key: "id")
            func store(_ name: String, at time: String) async throws {
                try await database.withConnection { sql in try await people.upsert(["id": "u1", "name": name, "updated_at": time], in: sql) }
            }
            func stored() async throws -> [String] {
                try await database.withConnection { sql in
                    try await sql.raw("SELECT name, updated_at FROM people").all().map {
                        "\(try $0.decode(column: "name", as: String.self))@\(try $0.decode(column: "updated_at", as: String.self))"
                    }
                }
            }
            try await store("Ann", at: "2026-12-01T10:00:00.000Z")
            #expect(try await stored() == ["Ann@2026-12-01T10:00:00.000Z"])
            try await store("Anna", at: "2026-12-01T11:00:00.000Z")
            #expect(try await stored() == ["Anna@2026-12-01T11:00:00.000Z"])
            // A late, older change is ignored; a redelivery of the newest one changes nothing.
            try await store("Ann", at: "2026-12-01T10:00:00.000Z")
            try await store("Anna", at: "2026-12-01T11:00:00.000Z")
            #expect(try await stored() == ["Anna@2026-12-01T11:00:00.000Z"])
        }
    }
}
