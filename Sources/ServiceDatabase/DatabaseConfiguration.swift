import Foundation

/// Which engine a service's database lives on, parsed from a `DATABASE_URL`-style string.
///
/// - empty: a SQLite file `<dataDirectory>/<service>.sqlite` (the embedded default);
/// - `sqlite::memory:`: an in-memory SQLite database (tests);
/// - `sqlite:///abs/path.sqlite` or `sqlite:relative/path.sqlite`: a SQLite file;
/// - `postgres://user:password@host:port/database?schema=NAME`: PostgreSQL, in schema `NAME`
///   (default `<service>_service`), so every service owns its schema in a shared server.
public enum DatabaseConfiguration: Sendable, Equatable {
    case sqliteMemory
    case sqliteFile(path: String)
    case postgres(PostgresSettings)

    /// Connection settings for PostgreSQL.
    public struct PostgresSettings: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        public var schema: String

        public init(host: String, port: Int, username: String, password: String?, database: String, schema: String) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.schema = schema
        }
    }

    /// An unusable `DATABASE_URL`.
    public struct InvalidURL: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses `url` for service `service`, keeping data files under `dataDirectory`.
    public init(url: String, service: String, dataDirectory: String) throws {
        if url.isEmpty {
            self = .sqliteFile(path: (dataDirectory as NSString).appendingPathComponent("\(service).sqlite"))
        } else if url == "sqlite::memory:" {
            self = .sqliteMemory
        } else if url.hasPrefix("sqlite://") {
            self = .sqliteFile(path: String(url.dropFirst("sqlite://".count)))
        } else if url.hasPrefix("sqlite:") {
            self = .sqliteFile(path: String(url.dropFirst("sqlite:".count)))
        } else if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
                throw InvalidURL(description: "DATABASE_URL is not a valid postgres URL")
            }
            let database = String(components.path.drop { $0 == "/" })
            let schema = components.queryItems?.first { $0.name == "schema" }?.value ?? "\(service.replacingOccurrences(of: "-", with: "_"))_service"
            guard Self.isSafeIdentifier(schema) else {
                throw InvalidURL(description: "schema must be letters, digits and underscores")
            }
            self = .postgres(
                PostgresSettings(
                    host: host,
                    port: components.port ?? 5432,
                    username: components.percentEncodedUser?.removingPercentEncoding ?? "postgres",
                    password: components.percentEncodedPassword?.removingPercentEncoding,
                    database: database.isEmpty ? "postgres" : database,
                    schema: schema
                )
            )
        } else {
            throw InvalidURL(description: "DATABASE_URL must start with sqlite: or postgres://")
        }
    }

    /// True for names made of ASCII letters, digits and underscores, not starting with a digit (safe to quote into DDL).
    public static func isSafeIdentifier(_ name: String) -> Bool {
        guard let first = name.first, !first.isNumber, name.count <= 63 else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}
