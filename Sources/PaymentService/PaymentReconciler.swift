import Foundation
import Logging
import Metrics
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ShopContracts

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
            // One payment that cannot be settled now never holds up the others.
            do {
                let label = try await settle(record)
                settled += 1
                Counter(label: "payments_reconciled_total", dimensions: [("outcome", label)]).increment()
                logger.info(
                    "Payment reconciled with the provider",
                    metadata: ["paymentId": "\(record.payment.id)", "was": "\(record.payment.status)", "outcome": "\(label)"])
            } catch {
                logger.warning(
                    "Could not reconcile a payment; trying again later", metadata: ["paymentId": "\(record.payment.id)", "error": "\(error)"])
            }
        }
        return settled
    }

    /// Settles one payment with what the provider did; answers the outcome's label.
    func settle(_ record: PaymentRecord) async throws -> String {
        let id = record.payment.id
        guard let outcome = try await processor.lookup(paymentId: id, since: PaymentRepository.date(record.payment.createdAt) - 60) else {
            try await repository.fail(id: id, failure: "not charged (checked with the provider)", checked: true)
            return "not_charged"
        }
        do {
            _ = try await repository.settle(record, outcome: outcome)
        } catch  where Database.isUniqueViolation(error) {
            // The order was paid meanwhile by another payment (the client paid again after this one's outcome was
            // unknown): this charge is a second one for the order, and goes back.
            guard case .approved(let reference) = outcome else { throw error }
            let refund = try await processor.refund(
                reference: reference, amountCents: Money.cents(record.payment.amount), idempotencyKey: "refund-\(id)"
            )
            try await repository.markDuplicate(id: id, reference: reference, refund: refund)
            return "duplicate_refunded"
        }
        if case .approved = outcome { return "charged" }
        return "declined"
    }
}
