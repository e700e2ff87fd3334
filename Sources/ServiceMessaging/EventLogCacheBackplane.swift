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

    public func read(cache: String, key: String) async throws -> ByteBuffer? { nil }

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
    }

    /// Reads the rows after `after` and hands each on; answers the last seq read.
    func poll(after: Int64) async throws -> Int64 {
        let rows = try await log.database.withConnection { sql in
            try await sql.raw("SELECT seq, body FROM cache_invalidations WHERE seq > \(bind: after) ORDER BY seq LIMIT 1000").all(decoding: Row.self)
        }
        let handler = self.handler.withLockedValue { $0 }
        for row in rows {
            if let invalidation = try? JSONDecoder().decode(CacheInvalidation.self, from: Data(row.body.utf8)) { handler?(invalidation) }
        }
        return rows.last?.seq ?? after
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
            var last: Int64?
            var lastRead = ContinuousClock.now
            var lastPrune = ContinuousClock.now
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                do {
                    if let seen = last {
                        // Too long without reading: rows may have been pruned unread.
                        if ContinuousClock.now - lastRead > backplane.keep / 2 {
                            backplane.handler.withLockedValue { $0 }?(CacheInvalidation(cache: "*", all: true, origin: ""))
                        }
                        last = try await backplane.poll(after: seen)
                    } else {
                        last = try await backplane.latest()
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
