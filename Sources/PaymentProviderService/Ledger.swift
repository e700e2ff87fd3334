import Foundation
import SQLKit
import ServiceDatabase

/// The provider's persistent ledger: every charge and refund, and the first answer given to each idempotency key, so a
/// repeated request is answered the same way after a restart of either side.
struct Ledger: Sendable {
    let database: Database

    /// An answer as stored for an idempotency key.
    struct Answer: Sendable, Equatable {
        var status: Int
        var body: String
        var replayed: Bool
    }

    /// Runs `work` (which writes the ledger and answers) in one transaction with the record of `key`: a key seen before
    /// with the same `fingerprint` is answered from its record without running `work`; with another fingerprint it is a
    /// 400. Without a key, `work` just runs.
    func idempotent(
        key: String?, operation: String, fingerprint: String,
        _ work: @escaping @Sendable (any SQLDatabase) async throws -> (status: Int, body: String)
    ) async throws -> Answer {
        for attempt in 0..<2 {
            do {
                return try await database.transaction { sql -> Answer in
                    if let key,
                        let row = try await sql.raw(
                            "SELECT fingerprint, status, body FROM idempotency_keys WHERE key = \(bind: key) AND operation = \(bind: operation)"
                        ).first()
                    {
                        guard try row.decode(column: "fingerprint", as: String.self) == fingerprint else {
                            throw ProviderError(
                                status: .badRequest, type: "idempotency_error", code: "idempotency_key_in_use",
                                message: "Keys for idempotent requests can only be used with the same parameters they were first used with."
                            )
                        }
                        return Answer(
                            status: try row.decode(column: "status", as: Int.self), body: try row.decode(column: "body", as: String.self),
                            replayed: true)
                    }
                    let answer = try await work(sql)
                    if let key {
                        try await sql.raw(
                            """
                            INSERT INTO idempotency_keys (key, operation, fingerprint, status, body, created_ms)
                            VALUES (\(bind: key), \(bind: operation), \(bind: fingerprint), \(bind: answer.status), \(bind: answer.body),
                                    \(bind: Int64(Date().timeIntervalSince1970 * 1000)))
                            """
                        ).run()
                    }
                    return Answer(status: answer.status, body: answer.body, replayed: false)
                }
            } catch  where attempt == 0 && Database.isUniqueViolation(error) {
                // The same key arrived twice at once: the other request committed first; answer from its record.
                continue
            }
        }
        throw ProviderError(
            status: .conflict, type: "idempotency_error", code: "idempotency_key_in_use", message: "A request with this key is in progress")
    }

    static func insert(_ charge: Charge, in sql: any SQLDatabase) async throws {
        let card = charge.paymentMethodDetails.card
        try await sql.raw(
            """
            INSERT INTO charges (id, amount, amount_refunded, currency, status, failure_code, failure_message, card_brand, card_last4,
                                 card_exp_month, card_exp_year, metadata, created)
            VALUES (\(bind: charge.id), \(bind: charge.amount), 0, \(bind: charge.currency), \(bind: charge.status), \(bind: charge.failureCode),
                    \(bind: charge.failureMessage), \(bind: card.brand), \(bind: card.last4), \(bind: card.expMonth), \(bind: card.expYear),
                    \(bind: String(decoding: try JSONEncoder().encode(charge.metadata), as: UTF8.self)), \(bind: charge.created))
            """
        ).run()
    }

    static func charge(id: String, in sql: any SQLDatabase) async throws -> Charge? {
        try await sql.raw("SELECT * FROM charges WHERE id = \(bind: id)").first().map(charge)
    }

    func charge(id: String) async throws -> Charge? {
        try await database.withConnection { sql in try await Self.charge(id: id, in: sql) }
    }

    /// Charges newest first, after the charge `startingAfter` (a cursor), created at or after `createdSince` (Unix
    /// seconds); one more than `limit` is read to tell whether there are more.
    func charges(limit: Int, startingAfter: String?, createdSince: Int64?) async throws -> ChargeList {
        try await database.withConnection { sql in
            var cursor: Int64?
            if let startingAfter {
                guard
                    let seq = try await sql.raw("SELECT seq FROM charges WHERE id = \(bind: startingAfter)").first()?.decode(
                        column: "seq", as: Int64.self)
                else {
                    throw ProviderError.missing("charge: \(startingAfter)")
                }
                cursor = seq
            }
            let rows = try await sql.raw(
                """
                SELECT * FROM charges WHERE seq < \(bind: cursor ?? Int64.max) AND created >= \(bind: createdSince ?? 0)
                ORDER BY seq DESC LIMIT \(bind: limit + 1)
                """
            ).all()
            let charges = try rows.prefix(limit).map(Self.charge)
            return ChargeList(data: charges, hasMore: rows.count > limit)
        }
    }

    static func charge(_ row: any SQLRow) throws -> Charge {
        let amount = try row.decode(column: "amount", as: Int64.self)
        let refunded = try row.decode(column: "amount_refunded", as: Int64.self)
        let status = try row.decode(column: "status", as: String.self)
        let metadataText = try row.decode(column: "metadata", as: String.self)
        guard let metadata = try? JSONDecoder().decode([String: String].self, from: Data(metadataText.utf8)) else {
            throw UnreadableValue(table: "charges", column: "metadata", value: metadataText)
        }
        return Charge(
            id: try row.decode(column: "id", as: String.self), amount: amount, amountRefunded: refunded,
            currency: try row.decode(column: "currency", as: String.self), status: status, paid: status == "succeeded", refunded: refunded == amount,
            failureCode: try row.decode(column: "failure_code", as: String?.self),
            failureMessage: try row.decode(column: "failure_message", as: String?.self),
            metadata: metadata, created: try row.decode(column: "created", as: Int64.self),
            paymentMethodDetails: .init(
                card: .init(
                    brand: try row.decode(column: "card_brand", as: String.self), last4: try row.decode(column: "card_last4", as: String.self),
                    expMonth: try row.decode(column: "card_exp_month", as: Int.self), expYear: try row.decode(column: "card_exp_year", as: Int.self)
                )
            )
        )
    }

    /// Refunds `amount` (nil: what is left) of a succeeded charge, in `sql`; the charge's refunded total never passes its
    /// amount, even with refunds racing.
    static func refund(charge id: String, amount: Int64?, in sql: any SQLDatabase) async throws -> Refund {
        guard let charge = try await charge(id: id, in: sql) else { throw ProviderError.missing("charge: \(id)") }
        guard charge.status == "succeeded" else {
            throw ProviderError.invalid("Charge \(id) did not succeed and cannot be refunded", param: "charge", code: "charge_not_refundable")
        }
        let left = charge.amount - charge.amountRefunded
        let refunding = amount ?? left
        guard refunding > 0, refunding <= left else {
            throw ProviderError.invalid(
                left == 0 ? "Charge \(id) has already been refunded." : "Refund amount is greater than the unrefunded amount (\(left)).",
                param: "amount", code: left == 0 ? "charge_already_refunded" : "amount_too_large"
            )
        }
        let updated = try await sql.raw(
            """
            UPDATE charges SET amount_refunded = amount_refunded + \(bind: refunding)
            WHERE id = \(bind: id) AND amount_refunded + \(bind: refunding) <= amount RETURNING id
            """
        ).all()
        guard !updated.isEmpty else {
            throw ProviderError.invalid("Refund amount is greater than the unrefunded amount.", param: "amount", code: "amount_too_large")
        }
        let refund = Refund(
            id: ProviderID.make("re"), amount: refunding, charge: id, currency: charge.currency, created: Int64(Date().timeIntervalSince1970))
        try await sql.raw(
            "INSERT INTO refunds (id, charge_id, amount, created) VALUES (\(bind: refund.id), \(bind: id), \(bind: refunding), \(bind: refund.created))"
        ).run()
        return refund
    }

    /// Forgets idempotency records made before `before` (milliseconds since 1970), in batches; answers how many.
    func pruneKeys(before: Int64) async throws -> Int {
        var total = 0
        while !Task.isCancelled {
            let removed = try await database.withConnection { sql in
                try await sql.raw(
                    """
                    DELETE FROM idempotency_keys WHERE (key, operation) IN (
                        SELECT key, operation FROM idempotency_keys WHERE created_ms < \(bind: before) LIMIT \(bind: PruneJob.batchSize))
                    RETURNING key
                    """
                ).all().count
            }
            total += removed
            if removed < PruneJob.batchSize { break }
        }
        return total
    }
}
