import Foundation
import SQLKit
import ServiceCore
import ServiceDatabase
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

    /// Stores the newest known contact fields of a user; an older change (by `updatedAt`) never overwrites a newer one.
    static func upsertRecipient(_ change: UserChanged, in sql: any SQLDatabase) async throws {
        try await sql.raw(
            """
            INSERT INTO recipients (user_id, email, name, updated_at)
            VALUES (\(bind: change.id), \(bind: change.email), \(bind: change.name), \(bind: change.updatedAt))
            ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name, updated_at = excluded.updated_at
            WHERE recipients.updated_at <= excluded.updated_at
            """
        ).run()
    }

    /// Records the confirmation of a new order for its customer (once per order: the notification id is the order's).
    static func recordOrderReceived(_ order: OrderCreated, in sql: any SQLDatabase) async throws {
        let items = order.items.map { "\($0.quantity) × \($0.name)" }.joined(separator: ", ")
        try await sql.raw(
            """
            INSERT INTO notifications (id, user_id, type, subject, body, created_at)
            VALUES (\(bind: "order-received-\(order.orderId)"), \(bind: order.userId), 'ORDER_RECEIVED',
                    \(bind: "Order \(order.orderId.prefix(8)) received"),
                    \(bind: "We received your order of \(items), total \(String(format: "%.2f", order.totalAmount))."), \(bind: Timestamp.now()))
            ON CONFLICT (id) DO NOTHING
            """
        ).run()
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
            let total = try await sql.raw("SELECT COUNT(*) AS n FROM notifications WHERE user_id = \(bind: userId)").first()?
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
