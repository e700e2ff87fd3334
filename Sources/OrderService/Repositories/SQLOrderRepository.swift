import Foundation
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceMessaging
import ShopContracts

/// ``OrderRepository`` on the service's own SQL database.
struct SQLOrderRepository: OrderRepository {
    let database: Database
    /// Publishes `order.created` through the outbox, in the order's transaction.
    let events: OutboxPublisher

    func create(_ order: OrderDTO) async throws {
        try await database.transaction { sql in try await Self.insert(order, in: sql, events: events) }
        events.committed()
    }

    /// Stores an order the checkout saga has paid for already (id chosen by the saga): `order.created`, and at once
    /// `order.fulfillment.requested`. Idempotent: an order that exists is left as it is.
    func createPaid(_ order: OrderDTO) async throws {
        var paid = order
        paid.status = OrderStatus.paid.rawValue
        let created = try await database.transaction { sql -> Bool in
            guard try await sql.raw("SELECT id FROM orders WHERE id = \(bind: order.id)").first() == nil else { return false }
            try await Self.insert(paid, in: sql, events: events)
            try await events.add(
                EventType.orderFulfillmentRequested, key: order.id, payload: OrderEvent(orderId: order.id, userId: order.userId, items: order.items),
                in: sql
            )
            return true
        }
        if created { events.committed() }
    }

    /// The order-number counter row is missing (the migrations did not run).
    struct CounterMissing: Error, CustomStringConvertible {
        var description: String { "the order-number counter is missing" }
    }

    /// Inserts an order with its lines and adds `order.created` to the outbox, inside `sql`.
    static func insert(_ order: OrderDTO, in sql: any SQLDatabase, events: OutboxPublisher) async throws {
        let address = String(decoding: try JSONEncoder().encode(order.shippingAddress), as: UTF8.self)
        guard
            let number = try await sql.raw("UPDATE counters SET value = value + 1 WHERE name = 'orders' RETURNING value").first()?
                .decode(column: "value", as: Int64.self)
        else { throw CounterMissing() }
        try await sql.raw(
            """
            INSERT INTO orders (id, user_id, status, total_cents, shipping_address, created_at, updated_at, seq)
            VALUES (\(bind: order.id), \(bind: order.userId), \(bind: order.status), \(bind: Money.cents(order.totalAmount)),
                    \(bind: address), \(bind: order.createdAt), \(bind: order.updatedAt), \(bind: number))
            """
        ).run()
        for (line, item) in order.items.enumerated() {
            try await sql.raw(
                """
                INSERT INTO order_items (order_id, line_no, product_id, name, quantity, price_cents)
                VALUES (\(bind: order.id), \(bind: line), \(bind: item.productId), \(bind: item.name), \(bind: item.quantity),
                        \(bind: Money.cents(item.price)))
                """
            ).run()
        }
        let created = OrderCreated(orderId: order.id, userId: order.userId, totalAmount: order.totalAmount, items: order.items)
        try await events.add(EventType.orderCreated, key: order.id, payload: created, in: sql)
    }

    func find(id: String) async throws -> OrderDTO? {
        try await database.withConnection { sql in
            guard let row = try await sql.raw("SELECT * FROM orders WHERE id = \(bind: id)").first() else { return nil }
            return try await Self.orders([row], sql: sql).first
        }
    }

    func list(userId: String, page: PageRequest) async throws -> (orders: [OrderDTO], total: Int) {
        try await database.withConnection { sql in
            let total =
                try await sql.raw("SELECT COUNT(*) AS total FROM orders WHERE user_id = \(bind: userId)").first()?
                .decode(column: "total", as: Int.self) ?? 0
            let rows = try await sql.raw(
                """
                SELECT * FROM orders WHERE user_id = \(bind: userId)
                ORDER BY created_at DESC, seq DESC LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
                """
            ).all()
            return (try await Self.orders(rows, sql: sql), total)
        }
    }

    func transition(id: String, to status: OrderStatus, at now: String, reason: String?) async throws -> OrderDTO? {
        let order = try await database.transaction { sql in
            try await Self.transition(id: id, to: status, at: now, reason: reason, in: sql, events: events)
        }
        events.committed()
        return order
    }

    /// Moves an order to `status` inside the transaction `sql` and adds what the move publishes to the outbox:
    /// `paid` → `order.fulfillment.requested`; `shipped` → an `ORDER_SHIPPED` notification; `cancelled` →
    /// `order.cancelled` (the inventory releases the stock, the payment service refunds). Nil for an unknown order;
    /// throws ``OrderRepositoryError/illegalTransition(from:to:)`` when the status machine refuses.
    static func transition(
        id: String, to status: OrderStatus, at now: String, reason: String? = nil, trackingNumber: String? = nil,
        in sql: any SQLDatabase, events: OutboxPublisher
    ) async throws -> OrderDTO? {
        guard let row = try await sql.raw("SELECT * FROM orders WHERE id = \(bind: id)").first() else { return nil }
        let current = try row.decode(column: "status", of: "orders", as: OrderStatus.self)
        guard current.canTransition(to: status) else { throw OrderRepositoryError.illegalTransition(from: current, to: status) }
        let cancellationReason = status == .cancelled ? (reason ?? "cancelled") : nil
        // The status in the WHERE clause makes a concurrent transition lose instead of overwrite.
        let changed = try await sql.raw(
            """
            UPDATE orders SET status = \(bind: status.rawValue), updated_at = \(bind: now),
                tracking_number = COALESCE(\(bind: trackingNumber), tracking_number),
                cancellation_reason = COALESCE(\(bind: cancellationReason), cancellation_reason)
            WHERE id = \(bind: id) AND status = \(bind: current.rawValue) RETURNING id
            """
        ).all()
        guard !changed.isEmpty else { throw OrderRepositoryError.illegalTransition(from: current, to: status) }
        guard var order = try await Self.orders([row], sql: sql).first else { return nil }
        order.status = status.rawValue
        order.updatedAt = now
        if let trackingNumber { order.trackingNumber = trackingNumber }
        if let cancellationReason { order.cancellationReason = cancellationReason }
        switch status {
        case .paid:
            let request = OrderEvent(orderId: order.id, userId: order.userId, items: order.items)
            try await events.add(EventType.orderFulfillmentRequested, key: order.id, payload: request, in: sql)
        case .shipped:
            let note = OrderNotification(
                kind: .orderShipped, userId: order.userId, orderId: order.id, details: ["trackingNumber": order.trackingNumber ?? ""]
            )
            try await events.send(OrderNotification.eventType, to: Queue.orderNotifications, key: order.id, payload: note, in: sql)
        case .cancelled:
            let cancelled = OrderEvent(orderId: order.id, userId: order.userId, items: order.items, reason: reason ?? "cancelled")
            try await events.add(EventType.orderCancelled, key: order.id, payload: cancelled, in: sql)
        case .pending, .confirmed, .delivered:
            break
        }
        return order
    }

    /// Assembles orders from their rows, loading all their lines in one query.
    static func orders(_ rows: [any SQLRow], sql: any SQLDatabase) async throws -> [OrderDTO] {
        guard !rows.isEmpty else { return [] }
        let ids = try rows.map { try $0.decode(column: "id", as: String.self) }
        let itemRows = try await sql.select().column("*").from("order_items")
            .where("order_id", .in, ids)
            .orderBy("order_id").orderBy("line_no")
            .all()
        var items: [String: [OrderDTO.Item]] = [:]
        for row in itemRows {
            let item = OrderDTO.Item(
                productId: try row.decode(column: "product_id", as: String.self),
                name: try row.decode(column: "name", as: String.self),
                quantity: try row.decode(column: "quantity", as: Int.self),
                price: Money.amount(try row.decode(column: "price_cents", as: Int64.self))
            )
            items[try row.decode(column: "order_id", as: String.self), default: []].append(item)
        }
        let userIds = Array(Set(try rows.map { try $0.decode(column: "user_id", as: String.self) }))
        var customers: [String: OrderDTO.Customer] = [:]
        for row in try await sql.select().column("*").from("customers").where("user_id", .in, userIds).all() {
            customers[try row.decode(column: "user_id", as: String.self)] = OrderDTO.Customer(
                name: try row.decode(column: "name", as: String.self), email: try row.decode(column: "email", as: String.self)
            )
        }
        return try rows.map { row in
            let id = try row.decode(column: "id", as: String.self)
            let address = try JSONDecoder().decode(
                OrderDTO.Address.self, from: Data(try row.decode(column: "shipping_address", as: String.self).utf8))
            return OrderDTO(
                id: id,
                userId: try row.decode(column: "user_id", as: String.self),
                status: try row.decode(column: "status", as: String.self),
                items: items[id] ?? [],
                shippingAddress: address,
                totalAmount: Money.amount(try row.decode(column: "total_cents", as: Int64.self)),
                customer: customers[try row.decode(column: "user_id", as: String.self)],
                trackingNumber: try row.decode(column: "tracking_number", as: String?.self),
                cancellationReason: try row.decode(column: "cancellation_reason", as: String?.self),
                createdAt: try row.decode(column: "created_at", as: String.self),
                updatedAt: try row.decode(column: "updated_at", as: String.self)
            )
        }
    }
}
