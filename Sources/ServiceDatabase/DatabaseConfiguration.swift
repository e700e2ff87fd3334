import Foundation

/// Which engine a service's database lives on, parsed from a `DATABASE_URL`-style string.
///
/// - empty: a SQLite file `<dataDirectory>/<service>.sqlite` (the embedded default);
/// - `sqlite::memory:`: an in-memory SQLite database (tests);
/// - `sqlite:///abs/path.sqlite` or `sqlite:relative/path.sqlite`: a SQLite file;
/// - `postgres://user:password@host:port/database?schema=NAME`: PostgreSQL, in schema `NAME`
///   (default `<service>_service`), so every service owns its schema in a shared server. More query parameters, after
///   libpq's names: `sslmode=disable|require|verify-full` (default `disable`; `require` encrypts without checking the
///   server's certificate, `verify-full` checks it and its host name), `sslrootcert=/path/ca.pem` (trust roots for
///   `verify-full`; default the system's), `pool_size=N` (connections per process, default 10),
///   `connect_timeout=S` (seconds, default 5), `statement_timeout=MS` (milliseconds, default none). Any other
///   parameter, or a value out of range, is an error.
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
        public var tls: TLSMode = .disable
        /// Connections per process.
        public var poolSize: Int = 10
        public var connectTimeout: Duration = .seconds(5)
        /// The server cancels a statement running longer (nil: no limit).
        public var statementTimeout: Duration?

        public init(host: String, port: Int, username: String, password: String?, database: String, schema: String) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.schema = schema
        }
    }

    /// How a PostgreSQL connection is secured (libpq's `sslmode`).
    public enum TLSMode: Sendable, Equatable {
        case disable
        /// Encrypted; the server's certificate is not checked.
        case require
        /// Encrypted; the certificate must chain to `rootCertificate` (a PEM file; nil: the system's roots) and name the host.
        case verifyFull(rootCertificate: String?)
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
            var query: [String: String] = [:]
            for item in components.queryItems ?? [] {
                guard query.updateValue(item.value ?? "", forKey: item.name) == nil else {
                    throw InvalidURL(description: "DATABASE_URL names '\(item.name.prefix(40))' twice")
                }
            }
            let schema = query.removeValue(forKey: "schema") ?? "\(service.replacingOccurrences(of: "-", with: "_"))_service"
            guard Self.isSafeIdentifier(schema) else {
                throw InvalidURL(description: "schema must be letters, digits and underscores")
            }
            var settings = PostgresSettings(
                host: host,
                port: components.port ?? 5432,
                username: components.percentEncodedUser?.removingPercentEncoding ?? "postgres",
                password: components.percentEncodedPassword?.removingPercentEncoding,
                database: database.isEmpty ? "postgres" : database,
                schema: schema
            )
            let root = query.removeValue(forKey: "sslrootcert")
            switch query.removeValue(forKey: "sslmode") ?? "disable" {
            case "disable": settings.tls = .disable
            case "require": settings.tls = .require
            case "verify-full": settings.tls = .verifyFull(rootCertificate: root)
            default: throw InvalidURL(description: "sslmode must be disable, require or verify-full")
            }
            if root != nil, case .verifyFull = settings.tls {
            } else if root != nil {
                throw InvalidURL(description: "sslrootcert is used with sslmode=verify-full only")
            }
            func number(_ name: String, _ range: ClosedRange<Int>) throws -> Int? {
                guard let text = query.removeValue(forKey: name) else { return nil }
                guard let value = Int(text), range.contains(value) else {
                    throw InvalidURL(description: "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                }
                return value
            }
            settings.poolSize = try number("pool_size", 1...1000) ?? settings.poolSize
            settings.connectTimeout = try number("connect_timeout", 1...600).map { .seconds($0) } ?? settings.connectTimeout
            settings.statementTimeout = try number("statement_timeout", 1...86_400_000).map { .milliseconds($0) }
            if let unknown = query.keys.sorted().first {
                throw InvalidURL(
                    description:
                        "DATABASE_URL has an unknown parameter '\(unknown.prefix(40))' (known: schema, sslmode, sslrootcert, pool_size, connect_timeout, statement_timeout)"
                )
            }
            self = .postgres(settings)
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
