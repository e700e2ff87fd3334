import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SQLKit
import ServiceCache
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceResilience
import Synchronization

/// Cache invalidations broadcast through the shared event log, for systems without Redis: an invalidation is a row of
/// `cache_invalidations`, and every process reads the rows after the last one it saw — every `pollInterval`, and at
/// once on PostgreSQL's `NOTIFY`. No second level: each instance keeps its own in-process level.
///
/// Not consumer groups: those hand each event to one instance of a group and keep events until every group handled
/// them, while an invalidation is for every instance and worthless after a moment. Rows older than `keep` are deleted
/// (by whichever process polls); a process that could not read for longer than half of that may have missed some and
/// empties its caches instead.
public final class EventLogCacheBackplane: CacheBackplane, Sendable {
    let log: EventLog
    let pollInterval: Duration
    let keep: Duration
    let logger: Logger
    let wakeup = Wakeup()
    private let handler = NIOLockedValueBox<(@Sendable (CacheInvalidation) -> Void)?>(nil)
    private let listening = Atomic<Bool>(false)
    static let channel = "shop_cache"

    public init(log: EventLog, pollInterval: Duration = .milliseconds(50), keep: Duration = .seconds(60), logger: Logger) {
        self.log = log
        self.pollInterval = pollInterval
        self.keep = keep
        self.logger = logger
    }

    public var hasSharedLevel: Bool { false }

    /// Whether the last read of the table succeeded.
    public var isListening: Bool { listening.load(ordering: .acquiring) }

    public func read(cache: String, key: String) async throws -> SharedEntry? { nil }

    public func write(cache: String, key: String, bytes: ByteBuffer, tags: [String], timeToLive: Duration) async throws {}

    public func invalidate(_ invalidation: CacheInvalidation) async throws {
        let body = String(decoding: try JSONEncoder().encode(invalidation), as: UTF8.self)
        let now = log.clock.millis
        try await log.database.withConnection { sql in
            try await sql.raw(
                "INSERT INTO cache_invalidations (origin, body, created_at) VALUES (\(bind: invalidation.origin), \(bind: body), \(bind: now))"
            ).run()
            if sql.dialect.name != "sqlite" {
                try await sql.raw("SELECT pg_notify(\(bind: Self.channel), \(bind: invalidation.origin))").run()
            }
        }
    }

    public func subscribe(_ handler: @escaping @Sendable (CacheInvalidation) -> Void) {
        self.handler.withLockedValue { $0 = handler }
    }

    public var services: [any Service] { [Poller(backplane: self)] }

    struct Row: Decodable {
        var seq: Int64
        var body: String
        var created_at: Int64
    }

    /// Where a poller is in the table. On PostgreSQL an identity value is taken at insert and becomes visible at
    /// commit, so a row can appear behind one already read: the last `lateWindow` of rows is read again and rows seen
    /// before are skipped. (SQLite has one writer at a time: rows appear in order.)
    struct Cursor {
        var last: Int64
        var seen: [Int64: Int64] = [:]
    }

    static let lateWindow = Duration.seconds(5)

    /// Reads the rows after the cursor (and, on PostgreSQL, the late window) and hands each new one on.
    func poll(_ cursor: inout Cursor) async throws {
        let windowStart = log.database.engine == .postgres ? log.clock.millis - Self.lateWindow.wholeMilliseconds : Int64.max
        let last = cursor.last
        let rows = try await log.database.withConnection { sql in
            try await sql.raw(
                """
                SELECT seq, body, created_at FROM cache_invalidations WHERE seq > \(bind: last) OR created_at >= \(bind: windowStart)
                ORDER BY seq LIMIT 1000
                """
            ).all(decoding: Row.self)
        }
        let handler = self.handler.withLockedValue { $0 }
        for row in rows where row.seq > cursor.last || cursor.seen[row.seq] == nil {
            if let invalidation = try? JSONDecoder().decode(CacheInvalidation.self, from: Data(row.body.utf8)) { handler?(invalidation) }
            cursor.last = max(cursor.last, row.seq)
            if windowStart != .max { cursor.seen[row.seq] = row.created_at }
        }
        cursor.seen = cursor.seen.filter { $0.value >= windowStart }
    }

    struct Last: Decodable {
        var last: Int64?
    }

    func latest() async throws -> Int64 {
        try await log.database.withConnection { sql in
            try await sql.raw("SELECT MAX(seq) AS last FROM cache_invalidations").first(decoding: Last.self)?.last ?? 0
        }
    }

    func prune() async throws {
        let before = log.clock.millis - keep.wholeMilliseconds
        try await log.database.withConnection { sql in
            try await sql.raw("DELETE FROM cache_invalidations WHERE created_at < \(bind: before)").run()
        }
    }

    /// Follows the table: from its end at start, then every row after.
    struct Poller: Service {
        let backplane: EventLogCacheBackplane

        func run() async throws {
            let log = backplane.log
            await cancelWhenGracefulShutdown { await log.waitUntilPrepared() }
            let listener = Task {
                // PostgreSQL: another process's invalidation wakes this one at once.
                while !Task.isCancelled {
                    try? await log.database.listen(channel: EventLogCacheBackplane.channel) { _ in backplane.wakeup.signal() }
                    guard log.database.engine == .postgres else { return }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            defer {
                listener.cancel()
                backplane.listening.store(false, ordering: .releasing)
            }
            var cursor: Cursor?
            var lastRead = ContinuousClock.now
            var lastPrune = ContinuousClock.now
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                do {
                    if var current = cursor {
                        // Too long without reading: rows may have been pruned unread.
                        if ContinuousClock.now - lastRead > backplane.keep / 2 {
                            backplane.handler.withLockedValue { $0 }?(.everything)
                        }
                        try await backplane.poll(&current)
                        cursor = current
                    } else {
                        cursor = Cursor(last: try await backplane.latest())
                    }
                    lastRead = .now
                    backplane.listening.store(true, ordering: .releasing)
                    if ContinuousClock.now - lastPrune > backplane.keep / 4 {
                        lastPrune = .now
                        try await backplane.prune()
                    }
                } catch {
                    backplane.listening.store(false, ordering: .releasing)
                    backplane.logger.debug("Could not read cache invalidations", metadata: ["error": "\(error)"])
                }
                await cancelWhenGracefulShutdown { await backplane.wakeup.wait(timeout: backplane.pollInterval) }
            }
        }
    }
}
