import Foundation
import Logging

/// The settings every service shares: who it is, where it listens, where its data lives.
///
/// Read from the environment with defaults that make a local start work: `HOST`, `PORT`, `LOG_LEVEL`,
/// `DATA_DIR`, `DATABASE_URL`, `MAX_BODY_BYTES`.
public struct ServiceSettings: Sendable {
    /// Service name used in logs, health output and database naming (`user`, `order`, ...).
    public var name: String
    public var host: String
    public var port: Int
    public var logLevel: Logger.Level
    /// Folder for local state (SQLite files, generated keys).
    public var dataDirectory: String
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://user:pass@host:port/db`. Empty means a SQLite file in `dataDirectory`.
    public var databaseURL: String
    /// Largest request body accepted, in bytes; larger bodies are answered with 413.
    public var maxBodyBytes: Int
    /// Where the shared event log lives (`EVENTLOG_URL`): empty means `<dataDirectory>/eventlog.sqlite`; a
    /// `postgres://` URL without `?schema=` puts it in schema `eventlog_service`.
    public var eventLogURL: String
    /// The service registry's URL (`REGISTRY_URL`, the gateway's): when set, calls to other services find their
    /// instances there; empty: the configured URLs only.
    public var registryURL: String = ""
    /// How long infrastructure rows (handled events, inbox ids, finished sagas, idempotency records) are kept
    /// (`RETENTION`, default `7d`; e.g. `30s`, `12h`), as written; parsed by `RetentionPolicy`.
    public var retention: String = "7d"
    /// How long dead letters are kept unless replayed (`DEAD_LETTER_RETENTION`, default `30d`), as written.
    public var deadLetterRetention: String = "30d"
    /// Redis for shared state (`REDIS_URL`): the caches' second level and their invalidations; empty: none (caches
    /// stay in process and invalidate each other through the event log).
    public var redisURL: String = ""
    /// A CA certificate file for `rediss://` (`REDIS_CA_FILE`).
    public var redisCAFile: String?
    /// Put before every key and channel name in Redis (`REDIS_KEY_PREFIX`), so several systems can share one Redis.
    public var redisKeyPrefix = ""
    /// Whether read caches are used (`CACHE=off` turns them off: every read goes to the database).
    public var cacheEnabled = true
    /// Called with the bound port once the server listens (tests and supervisors bind port 0).
    public var onServerRunning: @Sendable (Int) async -> Void = { _ in }

    public init(
        name: String,
        host: String = "127.0.0.1",
        port: Int,
        logLevel: Logger.Level = .info,
        dataDirectory: String = "./.shop",
        databaseURL: String = "",
        maxBodyBytes: Int = 1 << 20,
        eventLogURL: String = ""
    ) {
        self.eventLogURL = eventLogURL
        self.name = name
        self.host = host
        self.port = port
        self.logLevel = logLevel
        self.dataDirectory = dataDirectory
        self.databaseURL = databaseURL
        self.maxBodyBytes = maxBodyBytes
    }

    /// Reads the settings of service `name` from `environment`, with `defaultPort` when `PORT` is unset.
    public init(name: String, defaultPort: Int, environment: some SettingsSource = ProcessInfo.processInfo.environment) {
        self.init(
            name: name,
            host: environment.string("HOST", default: "127.0.0.1"),
            port: environment.int("PORT", default: defaultPort),
            logLevel: (environment.get("LOG_LEVEL_\(name.uppercased())") ?? environment.get("LOG_LEVEL")).flatMap { Logger.Level(rawValue: $0) }
                ?? .info,
            dataDirectory: environment.string("DATA_DIR", default: "./.shop"),
            databaseURL: environment.string("DATABASE_URL", default: ""),
            maxBodyBytes: environment.int("MAX_BODY_BYTES", default: 1 << 20),
            eventLogURL: environment.string("EVENTLOG_URL", default: "")
        )
        self.registryURL = environment.string("REGISTRY_URL", default: "")
        self.retention = environment.string("RETENTION", default: "7d")
        self.deadLetterRetention = environment.string("DEAD_LETTER_RETENTION", default: "30d")
        self.redisURL = environment.string("REDIS_URL", default: "")
        self.redisCAFile = environment.get("REDIS_CA_FILE").flatMap { $0.isEmpty ? nil : $0 }
        self.redisKeyPrefix = environment.string("REDIS_KEY_PREFIX", default: "")
        self.cacheEnabled = !["off", "false", "0", "no"].contains(environment.string("CACHE", default: "on").lowercased())
    }
}
