import SQLKit
import ServiceDatabase

/// The payment service's retention: an `Idempotency-Key` is remembered for the retention, and never less than 24
/// hours (what clients of payment APIs expect); then it is forgotten and the payment stays. A payment still
/// `processing` keeps its key until it is settled.
enum PaymentRetention {
    /// How long an idempotency key is honoured at the least.
    static let minimumKeyLifetime: Int64 = 24 * 3_600_000

    static func idempotencyKeys(database: Database) -> PruneJob {
        PruneJob(name: "payment idempotency keys", database: database) { cutoffs in
            let before = PruneCutoffs.timestamp(min(cutoffs.retainedSince, cutoffs.now - minimumKeyLifetime))
            var total = 0
            while !Task.isCancelled {
                let forgotten = try await database.withConnection { sql in
                    try await sql.raw(
                        """
                        UPDATE payments SET idempotency_key = NULL WHERE id IN (
                            SELECT id FROM payments WHERE idempotency_key IS NOT NULL AND status <> 'processing' AND created_at < \(bind: before)
                            LIMIT \(bind: PruneJob.batchSize))
                          AND status <> 'processing'
                        RETURNING id
                        """
                    ).all().count
                }
                total += forgotten
                if forgotten < PruneJob.batchSize { break }
            }
            return ["payment_idempotency_keys": total]
        }
    }
}
