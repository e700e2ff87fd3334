import SQLKit
import ServiceDatabase

extension SagaOrchestrator {
    /// Removes sagas of this definition that ended `completed` or `compensated` before `finishedBefore` (a `Timestamp`),
    /// with their history, at most `limit` per transaction. `also` runs in each transaction with the ids removed, for
    /// rows of the service that belong to those sagas (an idempotency record naming the saga, say), and answers how many
    /// it removed. A `failed` saga waits for an operator and is kept. Answers the sagas, history rows and `also`'s rows
    /// removed.
    public func prune(
        finishedBefore: String, limit: Int = PruneJob.batchSize, also: (@Sendable ([String], any SQLDatabase) async throws -> Int)? = nil
    ) async throws -> (sagas: Int, steps: Int, also: Int) {
        var total = (sagas: 0, steps: 0, also: 0)
        while !Task.isCancelled {
            let batch = try await database.transaction { sql -> (sagas: Int, steps: Int, also: Int) in
                let ids = try await sql.raw(
                    """
                    SELECT id FROM sagas WHERE name = \(bind: self.definition.name) AND status IN ('completed', 'compensated')
                      AND updated_at < \(bind: finishedBefore)
                    ORDER BY updated_at LIMIT \(bind: limit)
                    """
                ).all().map { try $0.decode(column: "id", as: String.self) }
                guard !ids.isEmpty else { return (0, 0, 0) }
                let steps = try await sql.raw("DELETE FROM saga_steps WHERE saga_id IN (\(binds: ids)) RETURNING seq").all().count
                let others = try await also?(ids, sql) ?? 0
                let sagas = try await sql.raw("DELETE FROM sagas WHERE id IN (\(binds: ids)) RETURNING id").all().count
                return (sagas, steps, others)
            }
            total = (total.sagas + batch.sagas, total.steps + batch.steps, total.also + batch.also)
            if batch.sagas < limit { break }
        }
        return total
    }

    /// The retention work of this orchestrator's sagas (see ``prune(finishedBefore:limit:also:)``); `also.table` names
    /// the rows `also.remove` removes.
    public func pruneJob(also: (table: String, remove: @Sendable ([String], any SQLDatabase) async throws -> Int)? = nil) -> PruneJob {
        PruneJob(name: "sagas \(definition.name)", database: database) { [self] cutoffs in
            let pruned = try await prune(finishedBefore: cutoffs.retainedSinceTimestamp, also: also?.remove)
            var counts = ["sagas": pruned.sagas, "saga_steps": pruned.steps]
            if let also { counts[also.table] = pruned.also }
            return counts
        }
    }
}
