import Foundation
import NIOConcurrencyHelpers

/// What a charge asks of a processor. The idempotency key makes a repeated charge (after a timeout, say) return the
/// first outcome instead of charging again.
public struct ChargeRequest: Sendable {
    public var idempotencyKey: String
    public var amountCents: Int64
    public var card: Card
    /// Kept with the charge by the provider (`orderId`, `paymentId`): how a charge is found again after a crash.
    public var metadata: [String: String] = [:]
}

/// A processor's answer to a charge.
public enum ChargeOutcome: Sendable, Equatable {
    case approved(reference: String)
    /// `code` is machine-readable (`card_declined`, `insufficient_funds`), `message` for people.
    case declined(code: String, message: String)
}

/// The processor did not answer in time, or could not be reached: the outcome is unknown, retry with the same key.
public struct ProcessorUnavailable: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A payment processor: charges and refunds. Implementations must honour idempotency keys.
public protocol PaymentProcessor: Sendable {
    func charge(_ request: ChargeRequest) async throws -> ChargeOutcome
    /// Refunds a charge in full; answers the refund's reference. Repeating it with the same key refunds once.
    func refund(reference: String, amountCents: Int64, idempotencyKey: String) async throws -> String
    /// What became of the charge made for payment `paymentId` (its `metadata.paymentId`) since `since`: its outcome, or
    /// nil when the provider never charged it.
    func lookup(paymentId: String, since: Date) async throws -> ChargeOutcome?
}

/// An in-memory sandbox processor for unit tests (the system runs the sandbox provider, a process of its own with a
/// persistent ledger, behind ``ProviderProcessor``), with the documented test cards:
///
/// | number | outcome |
/// |---|---|
/// | 4111 1111 1111 1111, 4242 4242 4242 4242 (and any other valid number) | approved |
/// | 4000 0000 0000 0002 | declined (`card_declined`) |
/// | 4000 0000 0000 9995 | declined (`insufficient_funds`) |
/// | 4000 0000 0000 0119 | the processor does not answer (the payment service times out) |
///
/// Charges are remembered by idempotency key for the life of the process, as a real processor would remember them.
public final class SandboxProcessor: PaymentProcessor {
    public static let declined = "4000000000000002"
    public static let insufficientFunds = "4000000000009995"
    public static let timesOut = "4000000000000119"

    private struct State {
        var charges: [String: ChargeOutcome] = [:]
        var refunds: [String: String] = [:]
        /// Amount charged per approved reference, and how much of it was refunded.
        var charged: [String: Int64] = [:]
        var refunded: [String: Int64] = [:]
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func charge(_ request: ChargeRequest) async throws -> ChargeOutcome {
        if let earlier = state.withLockedValue({ $0.charges[request.idempotencyKey] }) { return earlier }
        let outcome: ChargeOutcome
        switch request.card.number {
        case Self.timesOut:
            // Hangs like an unresponsive processor until the caller gives up (cancels).
            try await Task.sleep(for: .seconds(3600))
            throw ProcessorUnavailable(description: "sandbox processor did not answer")
        case Self.declined:
            outcome = .declined(code: "card_declined", message: "The card was declined")
        case Self.insufficientFunds:
            outcome = .declined(code: "insufficient_funds", message: "The card has insufficient funds")
        default:
            outcome = .approved(reference: "ch_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(24))
        }
        return state.withLockedValue { state in
            if let earlier = state.charges[request.idempotencyKey] { return earlier }
            state.charges[request.idempotencyKey] = outcome
            if case .approved(let reference) = outcome { state.charged[reference] = request.amountCents }
            return outcome
        }
    }

    public func refund(reference: String, amountCents: Int64, idempotencyKey: String) async throws -> String {
        try state.withLockedValue { state in
            if let earlier = state.refunds[idempotencyKey] { return earlier }
            guard let charged = state.charged[reference] else { throw ProcessorUnavailable(description: "unknown charge \(reference)") }
            guard state.refunded[reference, default: 0] + amountCents <= charged else {
                throw ProcessorUnavailable(description: "refund exceeds the charge \(reference)")
            }
            let refund = "re_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(24)
            state.refunds[idempotencyKey] = refund
            state.refunded[reference, default: 0] += amountCents
            return refund
        }
    }

    public func lookup(paymentId: String, since: Date) async throws -> ChargeOutcome? {
        // Charges here are keyed by the payment id (the payment service's processor key).
        state.withLockedValue { $0.charges[paymentId] }
    }

    /// Approved charges (how many), for tests: proves a retried request charged once.
    public var approvedCharges: Int {
        state.withLockedValue { $0.charged.count }
    }

    /// Total refunded, for tests.
    public var refundedCents: Int64 {
        state.withLockedValue { $0.refunded.values.reduce(0, +) }
    }
}
