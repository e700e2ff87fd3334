import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOPosix
import NIOSSL
import PostgresKit
import PostgresNIO
import SQLKit
import SQLiteKit
import ServiceCore
import ServiceLifecycle
import ServiceResilience
import Tracing

/// A service's own database: one SQL layer (SQLKit) over SQLite or PostgreSQL, so repositories are written once.
///
/// SQLite uses one connection in WAL mode, serialised by a FIFO lock; PostgreSQL uses a `PostgresClient` pool whose
/// connections start with `search_path` set to the service's schema. Run ``services`` in the service group (the
/// PostgreSQL pool needs its run loop) and call ``prepare(migrations:)`` before serving.
public final class Database: Sendable {
    /// The engine in use.
    public enum Engine: String, Sendable {
        case sqlite
        case postgres
    }

    enum Backend: Sendable {
        case sqlite(SQLiteConnection, AsyncLock, NIOThreadPool)
        case postgres(PostgresClient, schema: String)
    }

    let backend: Backend
    let logger: Logger
    /// Made once: transactions are a hot path.
    let metrics: TransactionMetrics

    /// `db_connections_in_use{schema}`, `db_transactions_total{schema, outcome}`, `db_transaction_duration_seconds{schema}`,
    /// and `db_connection_uses_total{schema}` (statements run outside a transaction, each committed on its own when it
    /// writes). Recorded through the process's `MetricsSystem` as bootstrapped when the database opened.
    struct TransactionMetrics: Sendable {
        let inUse: Meter
        let duration: Metrics.Timer
        let committed: Counter
        let rolledBack: Counter
        let connectionUses: Counter

        init(schema: String) {
            connectionUses = Counter(label: "db_connection_uses_total", dimensions: [("schema", schema)])
            inUse = Meter(label: "db_connections_in_use", dimensions: [("schema", schema)])
            duration = Metrics.Timer(label: "db_transaction_duration_seconds", dimensions: [("schema", schema)])
            committed = Counter(label: "db_transactions_total", dimensions: [("schema", schema), ("outcome", "committed")])
            rolledBack = Counter(label: "db_transactions_total", dimensions: [("schema", schema), ("outcome", "rolled_back")])
        }
    }
    private let closed = NIOLockedValueBox(false)
    /// Opens when ``prepare(migrations:)`` has applied the migrations: background work waits on it.
    public let prepared = Gate()

    /// The PostgreSQL schema of this database; nil on SQLite.
    public var schema: String? {
        if case .postgres(_, let schema) = backend { return schema }
        return nil
    }

    /// The engine this database runs on.
    public var engine: Engine {
        switch backend {
        case .sqlite: .sqlite
        case .postgres: .postgres
        }
    }

    /// Long-running work the database needs (the PostgreSQL pool, or closing the SQLite file at shutdown); add to the
    /// service group before anything that queries, so it stops after them.
    public var services: [any Service] {
        switch backend {
        case .sqlite: [SQLiteLifecycle(database: self)]
        case .postgres(let client, _): [client]
        }
    }

    /// Keeps a SQLite database open until graceful shutdown, then closes it.
    struct SQLiteLifecycle: Service {
        let database: Database

        func run() async throws {
            try? await gracefulShutdown()
            await database.close()
        }
    }

    /// Opens (SQLite) or configures (PostgreSQL) the database described by `configuration`.
    public static func open(_ configuration: DatabaseConfiguration, logger: Logger) async throws -> Database {
        switch configuration {
        case .sqliteMemory:
            return try await openSQLite(storage: .memory, logger: logger, wal: false)
        case .sqliteFile(let path):
            try createOwnerOnly(path: path)
            return try await openSQLite(storage: .file(path: path), logger: logger, wal: true)
        case .postgres(let settings):
            let client = PostgresClient(configuration: try clientConfiguration(settings), backgroundLogger: logger)
            return Database(backend: .postgres(client, schema: settings.schema), logger: logger)
        }
    }

    /// The PostgresNIO client configuration of `settings`: TLS, pool size, timeouts, and the session's schema.
    public static func clientConfiguration(_ settings: DatabaseConfiguration.PostgresSettings) throws -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch settings.tls {
        case .disable:
            tls = .disable
        case .require:
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            tls = .require(configuration)
        case .verifyFull(let root):
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .fullVerification
            if let root { configuration.trustRoots = .file(root) }
            tls = .require(configuration)
        }
        var config = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password, database: settings.database, tls: tls
        )
        config.options.additionalStartupParameters = [
            ("search_path", settings.schema),
            // A session left inside a transaction (its task gone) is ended by the server, releasing its locks.
            ("idle_in_transaction_session_timeout", "30000"),
        ]
        if let timeout = settings.statementTimeout {
            config.options.additionalStartupParameters.append(("statement_timeout", String(timeout.wholeMilliseconds)))
        }
        config.options.maximumConnections = settings.poolSize
        config.options.connectTimeout = settings.connectTimeout
        return config
    }

    /// Opens the database described by `configuration`, runs its background work while `body` runs with it, then closes
    /// it (for tools and tests that look into a service's database from outside the service).
    public static func with<T: Sendable>(
        _ configuration: DatabaseConfiguration, logger: Logger, _ body: @Sendable @escaping (Database) async throws -> T
    ) async throws -> T {
        let database = try await open(configuration, logger: logger)
        let result: T
        do {
            result = try await withThrowingTaskGroup(of: T?.self) { group in
                // The PostgreSQL pool needs its run loop; a SQLite file is closed below.
                if case .postgres(let client, _) = database.backend {
                    group.addTask {
                        await client.run(); return nil
                    }
                }
                group.addTask { try await body(database) }
                defer { group.cancelAll() }
                while let value = try await group.next() {
                    if let value { return value }
                }
                throw CancellationError()
            }
        } catch {
            await database.close()
            throw error
        }
        await database.close()
        return result
    }

    static func openSQLite(storage: SQLiteConnection.Storage, logger: Logger, wal: Bool) async throws -> Database {
        let pool = SQLiteThreads.shared.acquire()
        do {
            let connection = try await SQLiteConnection.open(
                storage: storage, threadPool: pool, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
            do {
                return try await Database(sqlite: connection, pool: pool, logger: logger, wal: wal)
            } catch {
                try? await connection.close()
                throw error
            }
        } catch {
            SQLiteThreads.shared.release()
            throw error
        }
    }

    init(backend: Backend, logger: Logger) {
        self.backend = backend
        self.logger = logger
        self.metrics = TransactionMetrics(schema: { if case .postgres(_, let schema) = backend { schema } else { "sqlite" } }())
    }

    /// Creates the folder of a SQLite file (owner only, 0700) and the file itself readable and writable by its owner only
    /// (0600), or narrows an existing file to that: the files hold password hashes and payments. SQLite gives its WAL and
    /// shared-memory files the database file's permissions.
    static func createOwnerOnly(path: String) throws {
        let files = FileManager.default
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !files.fileExists(atPath: directory) {
            try files.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        if files.fileExists(atPath: path) {
            try files.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        } else if !files.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]), !files.fileExists(atPath: path) {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }

    convenience init(sqlite connection: SQLiteConnection, pool: NIOThreadPool, logger: Logger, wal: Bool) async throws {
        let sql = connection.sql(queryLogLevel: nil)
        // Several processes may share one file (replicas); wait for a writer rather than failing at once.
        try await sql.raw("PRAGMA busy_timeout=10000").run()
        // Pages freed by pruning go back to the file system (``reclaimSpace()``): incremental auto-vacuum, which a file made
        // before it was turned on gets by one VACUUM — for a file of up to 64 MB, quick enough not to hold up the other
        // processes sharing it at start-up. A larger old file keeps reusing its freed pages instead (convert it once,
        // offline, with `PRAGMA auto_vacuum=INCREMENTAL; VACUUM;`).
        let autoVacuum = try await sql.raw("PRAGMA auto_vacuum").first()?.decode(column: "auto_vacuum", as: Int.self)
        if autoVacuum != 2 {
            let pages = try await sql.raw("PRAGMA page_count").first()?.decode(column: "page_count", as: Int.self) ?? 0
            let pageSize = try await sql.raw("PRAGMA page_size").first()?.decode(column: "page_size", as: Int.self) ?? 4096
            if pages * pageSize <= 64 << 20 {
                try await sql.raw("PRAGMA auto_vacuum=INCREMENTAL").run()
                try await sql.raw("VACUUM").run()
            }
        }
        if wal {
            try await sql.raw("PRAGMA journal_mode=WAL").run()
            try await sql.raw("PRAGMA synchronous=NORMAL").run()
            // The write-ahead log shrinks back to this size after a checkpoint instead of keeping its largest size.
            try await sql.raw("PRAGMA journal_size_limit=4194304").run()
        }
        try await sql.raw("PRAGMA foreign_keys=ON").run()
        self.init(backend: .sqlite(connection, AsyncLock(), pool), logger: logger)
    }

    /// Runs `body` with a connection, outside any transaction.
    public func withConnection<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        metrics.connectionUses.increment()
        switch backend {
        case .sqlite(let connection, let lock, _):
            return try await lock.withLock { try await body(connection.sql(queryLogLevel: nil)) }
        case .postgres(let client, _):
            return try await client.withConnection { connection in
                try await body(connection.sql(queryLogLevel: nil))
            }
        }
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    public func transaction<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        // A span per transaction (`db.system`, the schema), cheap when no tracer is installed; and the pool's use:
        // `db_connections_in_use{schema}`, `db_transactions_total{schema, outcome}`, `db_transaction_duration_seconds`.
        let started = ContinuousClock.now
        metrics.inUse.increment()
        defer {
            metrics.inUse.decrement()
            metrics.duration.recordNanoseconds(started.duration(to: .now).wholeNanoseconds)
        }
        do {
            let value = try await withSpan("db.transaction", ofKind: .client) { span in
                if span.isRecording {
                    span.attributes["db.system"] = self.schema == nil ? "sqlite" : "postgresql"
                    if let schema = self.schema { span.attributes["db.namespace"] = schema }
                }
                return try await untracedTransaction(body)
            }
            metrics.committed.increment()
            return value
        } catch {
            metrics.rolledBack.increment()
            throw error
        }
    }

    func untracedTransaction<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
        switch backend {
        case .sqlite(let connection, let lock, _):
            return try await lock.withLock {
                let sql = connection.sql(queryLogLevel: nil)
                // IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading a read lock.
                // BEGIN, COMMIT and ROLLBACK run shielded from the caller's cancellation: a cancelled task must never
                // leave the shared connection inside a transaction (the next BEGIN would fail, and the write lock
                // would stay taken).
                try await Self.shielded { try await sql.raw("BEGIN IMMEDIATE").run() }
                do {
                    let value = try await body(sql)
                    try await Self.shielded { try await sql.raw("COMMIT").run() }
                    return value
                } catch {
                    try? await Self.shielded { try await sql.raw("ROLLBACK").run() }
                    throw error
                }
            }
        case .postgres(let client, _):
            do {
                let value = try await client.withTransaction(logger: logger) { connection in
                    try await body(connection.sql(queryLogLevel: nil))
                }
                return value
            } catch let error as PostgresTransactionError {
                // The body's own error (after a clean rollback) is what callers handle, on either engine.
                if let closureError = error.closureError, error.rollbackError == nil { throw closureError }
                throw error
            }
        }
    }

    /// Runs `operation` in a task of its own, which the caller's cancellation does not reach.
    static func shielded(_ operation: @escaping @Sendable () async throws -> Void) async throws {
        try await Task { try await operation() }.value
    }

    /// Creates the service's schema (PostgreSQL) and applies the migrations not yet applied.
    public func prepare(migrations: [Migration]) async throws {
        if case .postgres(_, let schema) = backend {
            // Several processes may start at once: `CREATE SCHEMA IF NOT EXISTS` races on PostgreSQL's catalog, so it
            // runs under the same advisory lock as the migrations. The name was checked to be a plain identifier.
            _ = try await transaction { sql in
                try await Migrator.lock(schema, in: sql)
                try await sql.raw("CREATE SCHEMA IF NOT EXISTS \(unsafeRaw: "\"\(schema)\"")").run()
                try await sql.raw(Migrator.createTable).run()
            }
        }
        try await Migrator(database: self, logger: logger).apply(migrations)
        prepared.open()
    }

    /// PostgreSQL only: calls `onNotification` for every `NOTIFY channel` until cancelled (on a connection of its own).
    /// On SQLite there are no notifications and it returns at once.
    public func listen(channel: String, _ onNotification: @escaping @Sendable (_ payload: String) -> Void) async throws {
        guard case .postgres(let client, _) = backend else { return }
        try await client.withConnection { connection in
            try await connection.listen(on: channel) { notifications in
                for try await notification in notifications { onNotification(notification.payload) }
            }
        }
    }

    /// Gives pages freed by deletions back to the file system (SQLite: `PRAGMA incremental_vacuum`; PostgreSQL's
    /// autovacuum does this on its own, so nothing there). Answers the SQLite file's free pages left afterwards.
    @discardableResult
    public func reclaimSpace() async throws -> Int {
        guard case .sqlite = backend else { return 0 }
        // At most 8 MB (2,000 pages) per statement, so one write transaction on a shared file stays short.
        var free = 0
        for _ in 0..<100 {
            free = try await withConnection { sql in
                try await sql.raw("PRAGMA incremental_vacuum(2000)").run()
                return try await sql.raw("PRAGMA freelist_count").first()?.decode(column: "freelist_count", as: Int.self) ?? 0
            }
            if free == 0 || Task.isCancelled { break }
        }
        return free
    }

    /// Answers when the database answers a trivial query (for health checks).
    public func ping() async throws {
        try await withConnection { sql in try await sql.raw("SELECT 1").run() }
    }

    /// Closes the SQLite connection (once; later calls do nothing); the PostgreSQL pool closes when its service is cancelled.
    public func close() async {
        guard case .sqlite(let connection, let lock, _) = backend else { return }
        await lock.withLock {
            let first = closed.withLockedValue { closed in
                defer { closed = true }
                return !closed
            }
            if first {
                try? await connection.close()
                SQLiteThreads.shared.release()
            }
        }
    }

    deinit {
        // A database dropped without close() (a start-up that failed half way) still closes its SQLite file; the
        // close future keeps the connection alive until it is done.
        guard case .sqlite(let connection, _, _) = backend, !closed.withLockedValue({ $0 }) else { return }
        connection.close().whenComplete { _ in
            withExtendedLifetime(connection) {}
            SQLiteThreads.shared.release()
        }
    }

    /// True when `error` is a unique-constraint violation on either engine.
    public static func isUniqueViolation(_ error: any Error) -> Bool {
        if let error = error as? PSQLError {
            return error.serverInfo?[.sqlState] == "23505"
        }
        if let error = error as? SQLiteError {
            switch error.reason {
            case .constraintUniqueFailed, .constraintPrimaryKeyFailed: return true
            case .constraint: return error.message.contains("UNIQUE") || error.message.contains("PRIMARY KEY")
            default: return false
            }
        }
        return false
    }
}

/// The threads SQLite statements run on, shared by the process's SQLite databases: started when the first one opens and
/// shut down when the last one closes. Wide (32 threads) so that a statement waiting for another connection's lock (busy
/// timeout) never holds up the connection that must commit to release it: with NIO's two-thread singleton pool, services
/// sharing a file in one process could deadlock. The shutdown joins the threads on a dispatch queue, never on the
/// threads Swift's tasks run on.
final class SQLiteThreads: Sendable {
    static let shared = SQLiteThreads()

    private let state = NIOLockedValueBox<(pool: NIOThreadPool?, users: Int)>((nil, 0))

    /// The running pool, started if no database uses it; pair with ``release()``.
    func acquire() -> NIOThreadPool {
        state.withLockedValue { state in
            if let pool = state.pool {
                state.users += 1
                return pool
            }
            let pool = NIOThreadPool(numberOfThreads: 32)
            pool.start()
            state = (pool, 1)
            return pool
        }
    }

    /// One database is done with the pool; the last one shuts it down.
    func release() {
        let idle = state.withLockedValue { state -> NIOThreadPool? in
            precondition(state.users > 0, "the SQLite thread pool was released more often than acquired")
            state.users -= 1
            guard state.users == 0, let pool = state.pool else { return nil }
            state.pool = nil
            return pool
        }
        idle?.shutdownGracefully { _ in }
    }

    /// Whether a pool runs now (for tests).
    var isRunning: Bool { state.withLockedValue { $0.pool != nil } }
}
