import Foundation
import NIOSSL

/// Where and how to reach Redis: `redis://[user[:password]@]host[:port][/database]`, or `rediss://…` for TLS.
public struct RedisConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// ACL user (`default` when only a password is given).
    public var user: String?
    public var password: String?
    public var database: Int
    /// TLS settings (`rediss://`); nil for plain TCP.
    public var tls: TLSConfiguration?
    /// Connections in the pool; commands are spread over them and pipelined on each.
    public var poolSize: Int = 2
    /// How long a command may wait for its reply before the connection is given up.
    public var commandTimeout: Duration = .seconds(1)
    public var connectTimeout: Duration = .seconds(1)
    /// After a failed connection attempt, none before this (doubling per failure up to `maximumBackoff`): callers get
    /// ``RedisError/unavailable(_:)`` at once meanwhile, so a dead Redis does not slow every request down.
    public var minimumBackoff: Duration = .milliseconds(100)
    public var maximumBackoff: Duration = .seconds(5)
    /// Sent with `HELLO` (`CLIENT SETNAME`): shows in `CLIENT LIST`.
    public var clientName: String?

    public struct InvalidURL: Error, CustomStringConvertible {
        public var description: String
    }

    public init(
        host: String = "127.0.0.1", port: Int = 6379, user: String? = nil, password: String? = nil, database: Int = 0, tls: TLSConfiguration? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Reads a `redis://` or `rediss://` URL. With `rediss://` the server's certificate is verified against the system's
    /// roots, or against `caFile` (PEM) when given.
    public init(url: String, caFile: String? = nil) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme, scheme == "redis" || scheme == "rediss" else {
            throw InvalidURL(description: "expected redis://host:port/db or rediss://… (got a URL with another scheme or none)")
        }
        guard let host = components.host, !host.isEmpty else { throw InvalidURL(description: "the URL has no host") }
        self.init(host: host, port: components.port ?? 6379)
        // user:password@, or :password@ (the default user), percent-decoded.
        if let password = components.percentEncodedPassword {
            self.password = password.removingPercentEncoding ?? password
            let user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? ""
            self.user = user.isEmpty ? nil : user
        } else if let user = components.percentEncodedUser, !user.isEmpty {
            // redis://password@host, as some clients accept.
            self.password = user.removingPercentEncoding ?? user
        }
        let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !path.isEmpty {
            guard let database = Int(path), database >= 0 else { throw InvalidURL(description: "the database must be a number: /\(path)") }
            self.database = database
        }
        if scheme == "rediss" {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caFile { tls.trustRoots = .file(caFile) }
            self.tls = tls
        }
    }

    /// The URL without its password (for logs).
    public var redacted: String {
        let credentials = user.map { "\($0):***@" } ?? (password == nil ? "" : ":***@")
        return "\(tls == nil ? "redis" : "rediss")://\(credentials)\(host):\(port)/\(database)"
    }
}
