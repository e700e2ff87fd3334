import Foundation
import Logging
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceMessaging
import ServiceResilience
import ShopContracts

/// Stock reservations of orders: reserve on `order.created`, commit and ship on `order.fulfillment.requested`, release
/// on `order.cancelled` or when a reservation expires unpaid. Every step runs inside the consumer's transaction (with
/// its inbox record), so a redelivered event has no second effect; stock never goes below zero because each change is
/// a conditional update the database checks (`reserved <= stock`).
struct Reservations: Sendable {
    let events: OutboxPublisher
    /// How long an unpaid order holds its stock.
    let timeToLive: Duration
    /// The time reservations expire by (and the expiry sweep's schedule).
    let clock: any WallClock
    let logger: Logger

    /// Now, as the rows' `created_at`/`updated_at` store it.
    var timestamp: String { Timestamp.now(on: clock) }

    struct Shortage: Error {
        var productId: String
        var reason: String
    }

    /// Quantities per product, products in a fixed order (so concurrent reservations lock rows in the same order).
    static func quantities(_ items: [OrderDTO.Item]) -> [(productId: String, quantity: Int)] {
        Dictionary(items.map { ($0.productId, $0.quantity) }, uniquingKeysWith: +).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// `order.created`: reserves every line or none. Success queues `ORDER_CONFIRMED`; a shortage publishes
    /// `order.processing.failed` (the order service cancels the order). An order whose stock the checkout saga reserved
    /// before creating it is only confirmed.
    func reserve(_ order: OrderCreated, in sql: any SQLDatabase) async throws {
        let existing = try await sql.raw("SELECT status FROM reservations WHERE order_id = \(bind: order.orderId)").all()
            .map { try $0.decode(column: "status", as: String.self) }
        if existing.isEmpty {
            do {
                try await hold(orderId: order.orderId, lines: Self.quantities(order.items), in: sql)
            } catch let shortage as Shortage {
                logger.info("Order could not be reserved", metadata: ["orderId": "\(order.orderId)", "reason": "\(shortage.reason)"])
                try await events.add(
                    EventType.orderProcessingFailed, key: order.orderId,
                    payload: OrderProcessingFailed(orderId: order.orderId, reason: shortage.reason),
                    in: sql
                )
                return
            }
        } else if !existing.allSatisfy({ $0 == "reserved" || $0 == "committed" }) {
            return
        }
        let items = order.items.map { "\($0.quantity) × \($0.name)" }.joined(separator: ", ")
        let note = OrderNotification(
            kind: .orderConfirmed, userId: order.userId, orderId: order.orderId,
            details: ["items": items, "total": String(format: "%.2f", order.totalAmount)]
        )
        try await events.send(OrderNotification.eventType, to: Queue.orderNotifications, key: order.orderId, payload: note, in: sql)
    }

    /// Holds stock for every line of `orderId` or for none (throws ``Shortage``, leaving nothing held), inside `sql`.
    /// Holding again what the order holds already is a no-op; an order whose hold was released cannot hold again.
    func hold(orderId: String, lines: [(productId: String, quantity: Int)], in sql: any SQLDatabase) async throws {
        let existing = try await sql.raw("SELECT status FROM reservations WHERE order_id = \(bind: orderId)").all()
            .map { try $0.decode(column: "status", as: String.self) }
        guard existing.isEmpty else {
            guard existing.allSatisfy({ $0 == "reserved" || $0 == "committed" }) else {
                throw Shortage(productId: "", reason: "the order's reservation was released")
            }
            return
        }
        var taken: [(productId: String, quantity: Int)] = []
        do {
            for line in lines {
                let updated = try await sql.raw(
                    """
                    UPDATE products SET reserved = reserved + \(bind: line.quantity)
                    WHERE id = \(bind: line.productId) AND stock - reserved >= \(bind: line.quantity) RETURNING id
                    """
                ).all()
                guard !updated.isEmpty else {
                    let known = try await sql.raw("SELECT id FROM products WHERE id = \(bind: line.productId)").first() != nil
                    throw Shortage(
                        productId: line.productId, reason: known ? "insufficient stock of \(line.productId)" : "unknown product \(line.productId)")
                }
                taken.append(line)
            }
        } catch let shortage as Shortage {
            // Give back what this order took before the shortage (same transaction).
            for line in taken {
                try await sql.raw("UPDATE products SET reserved = reserved - \(bind: line.quantity) WHERE id = \(bind: line.productId)").run()
            }
            throw shortage
        }
        let now = timestamp
        let expiresAt = clock.millis(after: timeToLive)
        for line in lines {
            try await sql.raw(
                """
                INSERT INTO reservations (order_id, product_id, quantity, status, expires_at, created_at, updated_at)
                VALUES (\(bind: orderId), \(bind: line.productId), \(bind: line.quantity), 'reserved', \(bind: expiresAt), \(bind: now), \(bind: now))
                """
            ).run()
        }
    }

    /// `order.fulfillment.requested`: turns the order's reservations into shipped stock and publishes `order.shipped`
    /// with a tracking number. An order whose reservation was released meanwhile (it expired, or the order was
    /// cancelled) is not shipped: `order.processing.failed` says why.
    func ship(_ order: OrderEvent, in sql: any SQLDatabase) async throws {
        if try await sql.raw("SELECT order_id FROM shipments WHERE order_id = \(bind: order.orderId)").first() != nil { return }
        // Commit the held rows first (`UPDATE … RETURNING`): a release racing this shipment then finds nothing to give back.
        let held = try await sql.raw(
            """
            UPDATE reservations SET status = 'committed', updated_at = \(bind: timestamp)
            WHERE order_id = \(bind: order.orderId) AND status = 'reserved' RETURNING product_id, quantity
            """
        ).all()
        guard !held.isEmpty else {
            let any = try await sql.raw("SELECT order_id FROM reservations WHERE order_id = \(bind: order.orderId)").first()
            let reason = any == nil ? "no stock was reserved for the order" : "the order's reservation was released before payment"
            logger.warning("Paid order cannot be shipped", metadata: ["orderId": "\(order.orderId)", "reason": "\(reason)"])
            try await events.add(
                EventType.orderProcessingFailed, key: order.orderId, payload: OrderProcessingFailed(orderId: order.orderId, reason: reason), in: sql
            )
            return
        }
        for row in held {
            let productId = try row.decode(column: "product_id", as: String.self)
            let quantity = try row.decode(column: "quantity", as: Int.self)
            try await sql.raw(
                "UPDATE products SET stock = stock - \(bind: quantity), reserved = reserved - \(bind: quantity) WHERE id = \(bind: productId)"
            ).run()
        }
        let now = timestamp
        let tracking = Self.trackingNumber()
        try await sql.raw(
            "INSERT INTO shipments (order_id, tracking_number, shipped_at) VALUES (\(bind: order.orderId), \(bind: tracking), \(bind: now))"
        ).run()
        logger.info("Order shipped", metadata: ["orderId": "\(order.orderId)", "trackingNumber": "\(tracking)"])
        try await events.add(
            EventType.orderShipped, key: order.orderId, payload: OrderShipped(orderId: order.orderId, trackingNumber: tracking), in: sql)
    }

    /// Releases the order's held stock (`order.cancelled`, the saga's compensation, or expiry); answers whether anything
    /// was held. The reservation rows change first (`UPDATE … RETURNING`), so two releases — or a release racing a
    /// shipment — never both give the same units back. An order that held nothing gets a `released` marker, so a hold
    /// that arrives late (after its compensation) is refused instead of keeping stock for nobody.
    @discardableResult
    func release(orderId: String, in sql: any SQLDatabase) async throws -> Bool {
        let held = try await sql.raw(
            """
            UPDATE reservations SET status = 'released', updated_at = \(bind: timestamp)
            WHERE order_id = \(bind: orderId) AND status = 'reserved' RETURNING product_id, quantity
            """
        ).all()
        for row in held {
            let productId = try row.decode(column: "product_id", as: String.self)
            let quantity = try row.decode(column: "quantity", as: Int.self)
            try await sql.raw("UPDATE products SET reserved = reserved - \(bind: quantity) WHERE id = \(bind: productId)").run()
        }
        if held.isEmpty, try await sql.raw("SELECT order_id FROM reservations WHERE order_id = \(bind: orderId)").first() == nil {
            let now = timestamp
            try await sql.raw(
                """
                INSERT INTO reservations (order_id, product_id, quantity, status, expires_at, created_at, updated_at)
                VALUES (\(bind: orderId), \(bind: Self.releasedMarker), 1, 'released', 0, \(bind: now), \(bind: now))
                ON CONFLICT (order_id, product_id) DO NOTHING
                """
            ).run()
        }
        return !held.isEmpty
    }

    /// The product id of the row that records "released before anything was held".
    static let releasedMarker = "*released*"

    /// The products an order holds or held (for invalidating their cached reads once a change committed).
    func productIds(of orderId: String, in database: Database) async throws -> [String] {
        try await database.withConnection { sql in
            try await sql.raw(
                "SELECT product_id FROM reservations WHERE order_id = \(bind: orderId) AND product_id <> \(bind: Self.releasedMarker)"
            ).all().map { try $0.decode(column: "product_id", as: String.self) }
        }
    }

    /// Releases reservations that expired unpaid, one order per transaction, each with `order.processing.failed` (the
    /// order service cancels the order). Answers how many orders it released; `released` hears each order once its
    /// release committed.
    func expire(in database: Database, released onRelease: @Sendable (String) async -> Void = { _ in }) async throws -> Int {
        let now = clock.millis
        let due = try await database.withConnection { sql in
            try await sql.raw(
                "SELECT DISTINCT order_id FROM reservations WHERE status = 'reserved' AND expires_at < \(bind: now) LIMIT 100"
            ).all().map { try $0.decode(column: "order_id", as: String.self) }
        }
        var released = 0
        for orderId in due {
            let changed = try await database.transaction { sql -> Bool in
                // Checked again inside the transaction: a shipment may have committed it meanwhile.
                let still = try await sql.raw(
                    "SELECT order_id FROM reservations WHERE order_id = \(bind: orderId) AND status = 'reserved' AND expires_at < \(bind: now)"
                ).first()
                guard still != nil, try await release(orderId: orderId, in: sql) else { return false }
                let failure = OrderProcessingFailed(orderId: orderId, reason: "the stock reservation expired before payment")
                try await events.add(EventType.orderProcessingFailed, key: orderId, payload: failure, in: sql)
                return true
            }
            if changed {
                released += 1
                await onRelease(orderId)
                logger.info("Reservation expired", metadata: ["orderId": "\(orderId)"])
            }
        }
        if released > 0 { events.committed() }
        return released
    }

    /// A carrier-style tracking number: `SHOP` + 12 random digits and letters.
    static func trackingNumber() -> String {
        let alphabet = Array("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
        return "SHOP" + String((0..<12).map { _ in alphabet.randomElement()! })
    }
}

/// Sweeps expired reservations at an interval while the service runs.
struct ReservationExpiry: Service {
    let reservations: Reservations
    let database: Database
    let interval: Duration
    let logger: Logger
    /// Told of each order whose expired reservation was released (its stock is available again), once committed.
    var released: @Sendable (String) async -> Void = { _ in }

    func run() async throws {
        await cancelWhenGracefulShutdown { await database.prepared.wait() }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await reservations.clock.sleep(for: interval) }
            guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
            do {
                _ = try await reservations.expire(in: database, released: released)
            } catch {
                logger.warning("Reservation expiry failed; trying again later", metadata: ["error": "\(error)"])
            }
        }
    }
}
