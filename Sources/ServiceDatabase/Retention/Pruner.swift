import Foundation
import Logging
import Metrics
import ServiceCore
import ServiceLifecycle
import ServiceResilience

/// The moments before which rows are due for pruning, as milliseconds since 1970 (how the tables store time).
public struct PruneCutoffs: Sendable, Equatable {
    /// The time of the pass.
    public var now: Int64
    /// Rows under the ordinary retention older than this go.
    public var retainedSince: Int64
    /// Dead letters older than this go.
    public var deadLettersSince: Int64

    public init(now: Int64, retainedSince: Int64, deadLettersSince: Int64) {
        self.now = now
        self.retainedSince = retainedSince
        self.deadLettersSince = deadLettersSince
    }

    /// The cutoffs of `policy` at `millis` (since 1970).
    public init(policy: RetentionPolicy, now millis: Int64) {
        self.init(
            now: millis,
            retainedSince: millis - policy.retention.wholeMilliseconds,
            deadLettersSince: millis - policy.deadLetterRetention.wholeMilliseconds
        )
    }

    /// `retainedSince` as the text timestamps some tables keep (`Timestamp`'s fixed-width ISO 8601, which sorts as text).
    public var retainedSinceTimestamp: String { Self.timestamp(retainedSince) }

    /// `millis` (since 1970) written as `Timestamp` writes times.
    public static func timestamp(_ millis: Int64) -> String {
        Timestamp.format(Date(timeIntervalSince1970: Double(millis) / 1000))
    }
}

/// One kind of row a ``Pruner`` removes: `prune` deletes what is due at the cutoffs in bounded batches (short
/// transactions, so no lock is held for long) and answers how many rows it removed from each table.
public struct PruneJob: Sendable {
    /// What it prunes, for logs.
    public var name: String
    /// The database the rows live in, whose freed space is reclaimed after a pass that removed any.
    public var database: Database
    /// Returns once the tables exist (pruning starts after the migrations).
    public var ready: @Sendable () async -> Void
    public var prune: @Sendable (PruneCutoffs) async throws -> [String: Int]

    public init(
        name: String, database: Database, ready: (@Sendable () async -> Void)? = nil,
        prune: @escaping @Sendable (PruneCutoffs) async throws -> [String: Int]
    ) {
        self.name = name
        self.database = database
        self.ready = ready ?? { [database] in await database.prepared.wait() }
        self.prune = prune
    }

    /// Rows per transaction of a job.
    public static let batchSize = 500
}

/// Prunes a service's infrastructure tables on a schedule (every ``RetentionPolicy/interval``), counts what it removed
/// in `retention_pruned_rows_total{table}`, and gives freed SQLite pages back to the file system.
public final class Pruner: Service, Sendable {
    let policy: RetentionPolicy
    let jobs: [PruneJob]
    let logger: Logger
    /// The time rows are aged by, and of the schedule.
    let clock: any WallClock

    public init(policy: RetentionPolicy, jobs: [PruneJob], logger: Logger, clock: any WallClock = SystemClock()) {
        self.policy = policy
        self.jobs = jobs
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        for job in jobs {
            await cancelWhenGracefulShutdown { await job.ready() }
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            // A stop cuts a pass short between two batches (each batch is its own transaction).
            _ = await cancelWhenGracefulShutdown { await self.pass() }
            try? await cancelWhenGracefulShutdown { try await self.clock.sleep(for: self.policy.interval) }
        }
    }

    /// Runs every job once at the current cutoffs, then reclaims the space freed; answers the rows removed per table (only
    /// tables that lost rows). A job that fails is logged and tried again next pass; the others still run.
    @discardableResult
    public func pass() async -> [String: Int] {
        let cutoffs = PruneCutoffs(policy: policy, now: clock.millis)
        var removed: [String: Int] = [:]
        var touched: [ObjectIdentifier: Database] = [:]
        for job in jobs {
            guard !Task.isCancelled else { break }
            do {
                let counts = try await job.prune(cutoffs)
                for (table, count) in counts where count > 0 {
                    removed[table, default: 0] += count
                    Counter(label: "retention_pruned_rows_total", dimensions: [("table", table)]).increment(by: count)
                    touched[ObjectIdentifier(job.database)] = job.database
                }
            } catch {
                logger.warning("Pruning failed; trying again next time", metadata: ["job": "\(job.name)", "error": "\(error)"])
            }
        }
        for database in touched.values {
            do {
                try await database.reclaimSpace()
            } catch {
                logger.warning("Reclaiming database space failed", metadata: ["error": "\(error)"])
            }
        }
        if !removed.isEmpty { logger.debug("Pruned", metadata: ["rows": "\(removed)"]) }
        return removed
    }
}
