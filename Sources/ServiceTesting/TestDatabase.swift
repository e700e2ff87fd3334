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
            var configuration = PostgresClient.Configuration(
                host: settings.host, port: settings.port, username: settings.username, password: settings.password,
                database: settings.database, tls: .disable
            )
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
