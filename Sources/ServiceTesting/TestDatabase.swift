import Foundation
import Logging
import PostgresKit
import ServiceDatabase

/// The database engines tests run on: SQLite always, PostgreSQL when `TEST_DATABASE_URL` names a server
/// (the README's test command starts one and sets it).
public enum TestDatabase: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    /// `TEST_DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
    public static var postgresURL: String? {
        let value = ProcessInfo.processInfo.environment["TEST_DATABASE_URL"]
        return value?.isEmpty == false ? value : nil
    }

    /// The engines available here.
    public static var available: [TestDatabase] {
        postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    /// A fresh, empty database URL: in-memory SQLite, or a new uniquely named PostgreSQL schema.
    public func freshURL(service: String = "test") -> String {
        switch self {
        case .sqlite:
            return "sqlite::memory:"
        case .postgres:
            guard let base = Self.postgresURL else { return "sqlite::memory:" }
            let suffix = UUID().uuidString.prefix(8).lowercased()
            let separator = base.contains("?") ? "&" : "?"
            return "\(base)\(separator)schema=t_\(suffix)_\(service)"
        }
    }

    /// Drops the schemas named by `urls` (PostgreSQL); nothing to do for in-memory SQLite.
    public static func drop(_ urls: [String]) async {
        for url in urls where url.hasPrefix("postgres") {
            guard case .postgres(let settings) = try? DatabaseConfiguration(url: url, service: "x", dataDirectory: "") else { continue }
            guard var configuration = try? Database.clientConfiguration(settings) else { continue }
            configuration.options.maximumConnections = 1
            let client = PostgresClient(configuration: configuration)
            await withDiscardingTaskGroup { group in
                group.addTask { await client.run() }
                _ = try? await client.query("DROP SCHEMA IF EXISTS \(unescaped: "\"\(settings.schema)\"") CASCADE")
                group.cancelAll()
            }
        }
    }
}

extension TestDatabase {
    public var description: String { rawValue }
}

extension TestDatabase {
    /// Creates an empty PostgreSQL database on the test server and answers its URL (for tests that start processes,
    /// whose services each make their own schema in it).
    public static func createPostgresDatabase() async throws -> (url: String, name: String) {
        guard let base = postgresURL, var components = URLComponents(string: base) else { throw NoServer() }
        let name = "shop_sys_\(UUID().uuidString.prefix(8).lowercased())"
        try await withAdminClient { client in
            try await client.query("CREATE DATABASE \(unescaped: "\"\(name)\"")")
        }
        components.path = "/" + name
        // The server's connection settings (TLS) stay; a schema does not.
        components.queryItems = components.queryItems?.filter { $0.name != "schema" }
        if components.queryItems?.isEmpty == true { components.queryItems = nil }
        return (components.string ?? base, name)
    }

    /// Drops a database made by ``createPostgresDatabase()``, closing any connection left to it.
    public static func dropPostgresDatabase(_ name: String) async {
        guard DatabaseConfiguration.isSafeIdentifier(name) else { return }
        try? await withAdminClient { client in
            try await client.query("DROP DATABASE IF EXISTS \(unescaped: "\"\(name)\"") WITH (FORCE)")
        }
    }

    struct NoServer: Error {}

    static func withAdminClient(_ body: @Sendable (PostgresClient) async throws -> Void) async throws {
        guard let base = postgresURL,
            case .postgres(let settings) = try DatabaseConfiguration(url: base, service: "admin", dataDirectory: "")
        else { throw NoServer() }
        var configuration = try Database.clientConfiguration(settings)
        configuration.options.maximumConnections = 1
        let client = PostgresClient(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await body(client)
        }
    }
}
