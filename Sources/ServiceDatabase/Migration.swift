import Foundation
import Logging
import SQLKit

/// One versioned schema change. Versions are applied in ascending order, each in its own transaction, and recorded in
/// `schema_migrations` so each runs once per database.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var apply: @Sendable (any SQLDatabase) async throws -> Void

    public init(version: Int, name: String, apply: @escaping @Sendable (any SQLDatabase) async throws -> Void) {
        self.version = version
        self.name = name
        self.apply = apply
    }

    /// A migration made of plain SQL statements that both engines accept.
    public init(version: Int, name: String, statements: [String]) {
        self.init(version: version, name: name) { sql in
            for statement in statements {
                try await sql.raw(SQLQueryString(statement)).run()
            }
        }
    }
}

/// Applies migrations; safe when several processes start at once (a transaction per migration under a lock).
struct Migrator {
    let database: Database
    let logger: Logger

    /// The advisory lock that serialises changes of `schema` across processes on PostgreSQL (the replicas of one
    /// service starting together). One key per schema: services of other schemas never wait for each other, so a
    /// session stuck while holding one lock cannot hold up every service on the server.
    static func lockKey(_ schema: String) -> Int64 {
        // FNV-1a, 32 bits: stable across processes and versions (Swift's hashValue is seeded per process).
        var hash: UInt32 = 2_166_136_261
        for byte in schema.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return 72_439_115_000 + Int64(hash)
    }

    /// Locks `schema`'s migrations inside the transaction `sql` (PostgreSQL), waiting at most a minute for the lock.
    static func lock(_ schema: String, in sql: any SQLDatabase) async throws {
        try await sql.raw("SET LOCAL lock_timeout = '60s'").run()
        try await sql.raw("SELECT pg_advisory_xact_lock(\(literal: lockKey(schema)))").run()
    }
    static let createTable: SQLQueryString =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"

    struct DuplicateVersion: Error, CustomStringConvertible {
        var version: Int
        var description: String { "migration version \(version) appears twice" }
    }

    func apply(_ migrations: [Migration]) async throws {
        let sorted = migrations.sorted { $0.version < $1.version }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where previous.version == next.version {
            throw DuplicateVersion(version: next.version)
        }
        try await database.transaction { sql in
            if let schema = database.schema { try await Self.lock(schema, in: sql) }
            try await sql.raw(Self.createTable).run()
        }
        for migration in sorted {
            let applied = try await database.transaction { sql -> Bool in
                if let schema = database.schema { try await Self.lock(schema, in: sql) }
                let existing = try await sql.raw("SELECT version FROM schema_migrations WHERE version = \(bind: migration.version)").all()
                guard existing.isEmpty else { return false }
                try await migration.apply(sql)
                try await sql.raw(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Date.now.formatted(.iso8601)))"
                ).run()
                return true
            }
            if applied {
                logger.debug("Applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }

    /// Versions recorded as applied, ascending.
    static func appliedVersions(_ database: Database) async throws -> [Int] {
        try await database.withConnection { sql in
            try await sql.raw("SELECT version FROM schema_migrations ORDER BY version").all().map { try $0.decode(column: "version", as: Int.self) }
        }
    }
}

extension Database {
    /// The migration versions applied to this database, ascending.
    public func appliedMigrationVersions() async throws -> [Int] {
        try await Migrator.appliedVersions(self)
    }
}
