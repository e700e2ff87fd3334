import Foundation
import Logging
import Metrics
import ServiceCore
import ServiceLifecycle

/// Settles payments whose charge has an unknown outcome, at start and then periodically: a payment a crash left
/// `processing` (the provider may have charged before the process died), or one marked `failed` because the provider
/// did not answer in time. It asks the provider what became of the charge made under the payment's id: charged →
/// `completed` (with its events), declined → `declined`, never charged → `failed` (a retry with the same key charges
/// then). So no customer is charged twice and no charge goes unrecorded. Counted in `payments_reconciled_total{outcome}`.
struct PaymentReconciler: Service {
    let repository: PaymentRepository
    let processor: any PaymentProcessor
    /// How long a payment stays untouched before it counts as abandoned: longer than any live request charges for.
    let settleAfter: Duration
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown { await repository.database.prepared.wait() }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                _ = try await reconcile()
            } catch {
                logger.warning("Payment reconciliation failed; trying again", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    /// One pass over the payments untouched for ``settleAfter`` before `now`; answers how many it settled.
    @discardableResult
    func reconcile(now: Date = Date()) async throws -> Int {
        let before = Timestamp.format(now - Double(settleAfter.components.seconds))
        var settled = 0
        for record in try await repository.unsettled(before: before) {
            let id = record.payment.id
            let outcome = try await processor.lookup(paymentId: id, since: PaymentRepository.date(record.payment.createdAt) - 60)
            let label: String
            if let outcome {
                _ = try await repository.settle(record, outcome: outcome)
                if case .approved = outcome { label = "charged" } else { label = "declined" }
            } else {
                try await repository.fail(id: id, failure: "not charged (checked with the provider)", checked: true)
                label = "not_charged"
            }
            settled += 1
            Counter(label: "payments_reconciled_total", dimensions: [("outcome", label)]).increment()
            logger.info("Payment reconciled with the provider", metadata: ["paymentId": "\(id)", "was": "\(record.payment.status)", "outcome": "\(label)"])
        }
        return settled
    }
}
