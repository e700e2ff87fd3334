import Foundation
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceMessaging
import ShopContracts

/// A payment row, with what is needed to answer a repeated request.
struct PaymentRecord: Sendable {
    var payment: PaymentDTO
    var userId: String
    var fingerprint: String
    var processorReference: String?
    /// The stored answer of a finished request (replayed for a repeated Idempotency-Key).
    var response: (status: Int, body: String)?
}

/// What starting a payment found.
enum PaymentStart: Sendable {
    /// A new payment row in `processing`: go and charge.
    case started(PaymentRecord)
    /// A payment with the same Idempotency-Key exists already.
    case existing(PaymentRecord)
    /// Another payment of the order is in progress or took money already.
    case orderTaken(status: String)
}

/// Payments on the service's own SQL database. Events (`payment.confirmed`, `payment.refunded`) and queue messages are
/// written through the outbox in the transaction of the change that causes them.
struct PaymentRepository: Sendable {
    let database: Database
    let events: OutboxPublisher

    /// Inserts a `processing` payment unless the key or the order says otherwise.
    func start(_ record: PaymentRecord, idempotencyKey: String?) async throws -> PaymentStart {
        for attempt in 0..<2 {
            do {
                return try await database.transaction { sql -> PaymentStart in
                    if let idempotencyKey, let existing = try await Self.find(userId: record.userId, key: idempotencyKey, in: sql) {
                        return .existing(existing)
                    }
                    if let live = try await sql.raw(
                        "SELECT status FROM payments WHERE order_id = \(bind: record.payment.orderId) AND status IN ('processing', 'completed', 'refunded')"
                    ).first() {
                        return .orderTaken(status: try live.decode(column: "status", as: String.self))
                    }
                    let payment = record.payment
                    try await sql.raw(
                        """
                        INSERT INTO payments (id, order_id, user_id, amount_cents, status, card_brand, card_last4, idempotency_key,
                                              fingerprint, created_at, updated_at)
                        VALUES (\(bind: payment.id), \(bind: payment.orderId), \(bind: record.userId), \(bind: Money.cents(payment.amount)),
                                'processing', \(bind: payment.card.brand), \(bind: payment.card.last4), \(bind: idempotencyKey),
                                \(bind: record.fingerprint), \(bind: payment.createdAt), \(bind: payment.createdAt))
                        """
                    ).run()
                    var started = record
                    started.payment.status = "processing"
                    return .started(started)
                }
            } catch  where Database.isUniqueViolation(error) && attempt == 0 {
                // A concurrent request inserted first (same key, or same order): look again, now it is visible.
                continue
            }
        }
        throw PaymentController.inProgress("A payment for this order is already in progress")
    }

    /// Takes a payment whose charge failed without an answer (`failed`) back to `processing`, for a retry with the same
    /// key; false when it is not in `failed` any more (another retry took it).
    func retry(id: String) async throws -> Bool {
        do {
            return try await database.withConnection { sql in
                try await !sql.raw(
                    "UPDATE payments SET status = 'processing', updated_at = \(bind: Timestamp.now()) WHERE id = \(bind: id) AND status = 'failed' RETURNING id"
                ).all().isEmpty
            }
        } catch  where Database.isUniqueViolation(error) {
            // Another payment of the order is live now: this one stays failed.
            throw APIError(.conflict, "Another payment for this order is in progress or completed")
        }
    }

    /// The payment `userId` made with Idempotency-Key `key`, if any.
    func find(userId: String, key: String) async throws -> PaymentRecord? {
        try await database.withConnection { sql in try await Self.find(userId: userId, key: key, in: sql) }
    }

    /// Records what the processor did with `record`'s charge and answers what the request answers (and a repeated one
    /// will): 200 with the completed payment, or 402 for a declined card.
    func settle(_ record: PaymentRecord, outcome: ChargeOutcome) async throws -> (status: Int, body: String) {
        switch outcome {
        case .approved(let reference):
            var completed = record
            completed.payment.status = "completed"
            let body = String(decoding: try JSONEncoder().encode(completed.payment), as: UTF8.self)
            try await complete(completed, reference: reference, response: body)
            return (200, body)
        case .declined(let code, let message):
            let error = APIError(
                .init(code: 402, reasonPhrase: "Payment Required"), message, extra: ["code": .string(code), "paymentId": .string(record.payment.id)])
            let body = String(buffer: error.body)
            try await decline(id: record.payment.id, failure: code, responseStatus: 402, response: body)
            return (402, body)
        }
    }

    /// Records an approved charge and its answer, publishes `payment.confirmed` and queues `PAYMENT_PROCESSED` — once:
    /// a payment settled meanwhile (by a request or by reconciliation) is left as it is.
    func complete(_ record: PaymentRecord, reference: String, response: String) async throws {
        let payment = record.payment
        try await database.transaction { sql in
            let settled = try await sql.raw(
                """
                UPDATE payments SET status = 'completed', processor_reference = \(bind: reference), failure = NULL,
                    response_status = 200, response_body = \(bind: response), updated_at = \(bind: Timestamp.now())
                WHERE id = \(bind: payment.id) AND status IN ('processing', 'failed') RETURNING id
                """
            ).all()
            guard !settled.isEmpty else { return }
            let event = PaymentEvent(paymentId: payment.id, orderId: payment.orderId, userId: record.userId, amount: payment.amount)
            try await events.add(EventType.paymentConfirmed, key: payment.orderId, payload: event, in: sql)
            let note = OrderNotification(
                kind: .paymentProcessed, userId: record.userId, orderId: payment.orderId,
                details: ["amount": String(format: "%.2f", payment.amount), "card": "\(payment.card.brand) ending in \(payment.card.last4)"]
            )
            try await events.send(OrderNotification.eventType, to: Queue.orderNotifications, key: payment.orderId, payload: note, in: sql)
        }
        events.committed()
    }

    /// Records a declined charge and its answer (a repeated request gets the same answer).
    func decline(id: String, failure: String, responseStatus: Int, response: String) async throws {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                UPDATE payments SET status = 'declined', failure = \(bind: failure), response_status = \(bind: responseStatus),
                    response_body = \(bind: response), updated_at = \(bind: Timestamp.now())
                WHERE id = \(bind: id) AND status IN ('processing', 'failed')
                """
            ).run()
        }
    }

    /// Records a charge whose outcome is unknown (the processor did not answer); nothing is stored to replay, so a
    /// retry with the same key charges again with the same processor key — which the processor answers once.
    func fail(id: String, failure: String, checked: Bool = false) async throws {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                UPDATE payments SET status = 'failed', failure = \(bind: failure), updated_at = \(bind: Timestamp.now()),
                    checked_at = \(bind: checked ? Timestamp.now() : nil)
                WHERE id = \(bind: id) AND status IN ('processing', 'failed')
                """
            ).run()
        }
    }

    /// Records a charge made for a payment whose order was paid by another one, and its refund: the payment stays
    /// `failed` (the order's payment is the other one; no events), checked, with both references.
    func markDuplicate(id: String, reference: String, refund: String) async throws {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                UPDATE payments SET status = 'failed', processor_reference = \(bind: reference), refund_reference = \(bind: refund),
                    failure = 'a second charge for a paid order, refunded', checked_at = \(bind: Timestamp.now()), updated_at = \(bind: Timestamp.now())
                WHERE id = \(bind: id) AND status IN ('processing', 'failed')
                """
            ).run()
        }
    }

    /// Payments whose charge has an unknown outcome and that nobody is charging any more (untouched since `before`):
    /// `processing` ones a crash left behind, and `failed` ones (the provider did not answer in time) not yet checked.
    func unsettled(before: String, limit: Int = 100) async throws -> [PaymentRecord] {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                SELECT * FROM payments
                WHERE (status = 'processing' OR (status = 'failed' AND response_status IS NULL AND checked_at IS NULL)) AND updated_at < \(bind: before)
                ORDER BY updated_at LIMIT \(bind: limit)
                """
            ).all().map(Self.record)
        }
    }

    func find(id: String) async throws -> PaymentRecord? {
        try await database.withConnection { sql in
            try await sql.raw("SELECT * FROM payments WHERE id = \(bind: id)").first().map(Self.record)
        }
    }

    /// The order's latest payment attempt, if any.
    func latest(orderId: String) async throws -> PaymentRecord? {
        try await database.withConnection { sql in
            try await sql.raw("SELECT * FROM payments WHERE order_id = \(bind: orderId) ORDER BY created_at DESC, id DESC LIMIT 1").first().map(
                Self.record)
        }
    }

    /// Refunds payment `id`: the processor first (keyed by the payment, so a repeat refunds once), outside any
    /// transaction, then the record in a short one. Answers the payment as it now is, nil when unknown.
    ///
    /// A payment whose charge has an unknown outcome (the provider did not answer in time) is first looked up at the
    /// provider: a charge it did make is recorded, then refunded, so no money is kept for a payment given up on.
    func refund(id: String, processor: any PaymentProcessor) async throws -> PaymentRecord? {
        guard var record = try await find(id: id) else { return nil }
        if record.payment.status == "failed", record.response == nil,
            let outcome = try await processor.lookup(paymentId: id, since: Self.date(record.payment.createdAt) - 60)
        {
            _ = try await settle(record, outcome: outcome)
            guard let settled = try await find(id: id) else { return nil }
            record = settled
        }
        guard record.payment.status == "completed", let reference = record.processorReference else { return record }
        let refund = try await processor.refund(
            reference: reference, amountCents: Money.cents(record.payment.amount), idempotencyKey: "refund-\(record.payment.id)"
        )
        try await database.transaction { sql in try await markRefunded(record, reference: refund, in: sql) }
        events.committed()
        return try await find(id: id)
    }

    /// Marks a payment refunded and publishes `payment.refunded`, inside the transaction `sql`.
    func markRefunded(_ record: PaymentRecord, reference: String, in sql: any SQLDatabase) async throws {
        let changed = try await sql.raw(
            """
            UPDATE payments SET status = 'refunded', refund_reference = \(bind: reference), updated_at = \(bind: Timestamp.now())
            WHERE id = \(bind: record.payment.id) AND status = 'completed' RETURNING id
            """
        ).all()
        // Refunded already (a concurrent refund of the same payment): announced once.
        guard !changed.isEmpty else { return }
        let payment = record.payment
        let event = PaymentEvent(paymentId: payment.id, orderId: payment.orderId, userId: record.userId, amount: payment.amount)
        try await events.add(EventType.paymentRefunded, key: payment.orderId, payload: event, in: sql)
    }

    /// A stored `Timestamp` as a date (the distant past when it cannot be read, so a lookup from it misses nothing).
    static func date(_ timestamp: String) -> Date {
        (try? Date(timestamp, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))) ?? Date(timeIntervalSince1970: 0)
    }

    static func find(userId: String, key: String, in sql: any SQLDatabase) async throws -> PaymentRecord? {
        try await sql.raw("SELECT * FROM payments WHERE user_id = \(bind: userId) AND idempotency_key = \(bind: key)").first().map(Self.record)
    }

    static func record(_ row: any SQLRow) throws -> PaymentRecord {
        let status = try row.decode(column: "response_status", as: Int?.self)
        let body = try row.decode(column: "response_body", as: String?.self)
        return PaymentRecord(
            payment: PaymentDTO(
                id: try row.decode(column: "id", as: String.self),
                orderId: try row.decode(column: "order_id", as: String.self),
                amount: Money.amount(try row.decode(column: "amount_cents", as: Int64.self)),
                status: try row.decode(column: "status", as: String.self),
                card: .init(
                    brand: try row.decode(column: "card_brand", as: String.self), last4: try row.decode(column: "card_last4", as: String.self)),
                createdAt: try row.decode(column: "created_at", as: String.self)
            ),
            userId: try row.decode(column: "user_id", as: String.self),
            fingerprint: try row.decode(column: "fingerprint", as: String.self),
            processorReference: try row.decode(column: "processor_reference", as: String?.self),
            response: status.flatMap { status in body.map { (status, $0) } }
        )
    }
}
