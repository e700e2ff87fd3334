import Foundation
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceMessaging
import ShopContracts

/// A notification sent to a user.
struct NotificationDTO: Codable, Sendable, Equatable {
    var id: String
    var userId: String
    var type: String
    var subject: String
    var body: String
    var createdAt: String
}

/// The service's replica of users' contact fields, and the notifications it has sent.
struct NotificationRepository: Sendable {
    let database: Database

    static let recipients = ReplicaTable("recipients", key: "user_id")

    /// Stores the newest known contact fields of a user; an older change (by `updatedAt`) never overwrites a newer one.
    static func upsertRecipient(_ change: UserChanged, in sql: any SQLDatabase) async throws {
        try await recipients.upsert(["user_id": change.id, "email": change.email, "name": change.name, "updated_at": change.updatedAt], in: sql)
    }

    /// A recipient the replica does not know yet (its `user.created` has not arrived): the message is retried later.
    struct RecipientUnknown: Error, CustomStringConvertible {
        var userId: String
        var description: String { "recipient \(userId) is not in the replica yet" }
    }

    /// Handles one `order-notifications` message inside the consumer's transaction: records the notification and, in the
    /// same transaction, the intent to mail it to the address in the replica (a `notification-mail` queue message, sent
    /// after commit). The notification's id comes from the message (kind and order), so a redelivered message records
    /// the notification and its mail once; a transaction that rolls back takes its mail with it.
    static func deliver(_ note: OrderNotification, in sql: any SQLDatabase, mail: OutboxPublisher) async throws {
        guard let row = try await sql.raw("SELECT email, name FROM recipients WHERE user_id = \(bind: note.userId)").first() else {
            throw RecipientUnknown(userId: note.userId)
        }
        let email = try row.decode(column: "email", as: String.self)
        let name = try row.decode(column: "name", as: String.self)
        let id = "\(note.kind.rawValue.lowercased().replacingOccurrences(of: "_", with: "-"))-\(note.orderId)"
        let (subject, body) = compose(note, name: name)
        let now = Date.now
        let inserted = try await sql.raw(
            """
            INSERT INTO notifications (id, user_id, type, subject, body, created_at)
            VALUES (\(bind: id), \(bind: note.userId), \(bind: note.kind.rawValue), \(bind: subject), \(bind: body), \(bind: Timestamp.format(now)))
            ON CONFLICT (id) DO NOTHING RETURNING id
            """
        ).all()
        guard !inserted.isEmpty else { return }
        let request = MailRequest(id: id, toName: name, toAddress: email, subject: subject, body: body, date: Timestamp.format(now))
        try await mail.send(MailRequest.eventType, to: MailRequest.queue, key: id, payload: request, in: sql)
    }

    static func compose(_ note: OrderNotification, name: String) -> (subject: String, body: String) {
        let order = String(note.orderId.prefix(8))
        let detail = { (key: String) in note.details[key] ?? "" }
        switch note.kind {
        case .orderConfirmed:
            return (
                "Your order \(order) is confirmed",
                "Hello \(name),\n\nWe have set aside \(detail("items")) for your order \(note.orderId).\nTotal: \(detail("total")).\n\nThank you for shopping with us."
            )
        case .paymentProcessed:
            return (
                "Payment received for order \(order)",
                "Hello \(name),\n\nWe received your payment of \(detail("amount")) (\(detail("card"))) for order \(note.orderId).\nWe will ship it shortly."
            )
        case .orderShipped:
            return (
                "Your order \(order) has shipped",
                "Hello \(name),\n\nYour order \(note.orderId) is on its way.\nTracking number: \(detail("trackingNumber")).\n"
            )
        }
    }

    func recipient(id: String) async throws -> Contact? {
        try await database.withConnection { sql in
            try await sql.raw("SELECT * FROM recipients WHERE user_id = \(bind: id)").first().map { row in
                Contact(
                    id: try row.decode(column: "user_id", as: String.self),
                    email: try row.decode(column: "email", as: String.self),
                    name: try row.decode(column: "name", as: String.self),
                    updatedAt: try row.decode(column: "updated_at", as: String.self)
                )
            }
        }
    }

    func list(userId: String, page: PageRequest) async throws -> (notifications: [NotificationDTO], total: Int) {
        try await database.withConnection { sql in
            let total =
                try await sql.raw("SELECT COUNT(*) AS n FROM notifications WHERE user_id = \(bind: userId)").first()?
                .decode(column: "n", as: Int.self) ?? 0
            let rows = try await sql.raw(
                """
                SELECT * FROM notifications WHERE user_id = \(bind: userId)
                ORDER BY created_at DESC, id DESC LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
                """
            ).all()
            return (
                try rows.map { row in
                    NotificationDTO(
                        id: try row.decode(column: "id", as: String.self),
                        userId: try row.decode(column: "user_id", as: String.self),
                        type: try row.decode(column: "type", as: String.self),
                        subject: try row.decode(column: "subject", as: String.self),
                        body: try row.decode(column: "body", as: String.self),
                        createdAt: try row.decode(column: "created_at", as: String.self)
                    )
                }, total
            )
        }
    }
}
