import ServiceCore
import ServiceHTTP
import ShopContracts

/// Storage of orders and their lines.
protocol OrderRepository: Sendable {
    /// Stores an order with its lines in one transaction.
    func create(_ order: OrderDTO) async throws
    func find(id: String) async throws -> OrderDTO?
    /// A page of `userId`'s orders, newest first, and how many there are in all.
    func list(userId: String, page: PageRequest) async throws -> (orders: [OrderDTO], total: Int)
    /// Moves an order to `status` when the status machine allows it; nil when the order is unknown.
    /// `reason` is kept as the order's cancellation reason when `status` is `cancelled`.
    func transition(id: String, to status: OrderStatus, at: String, reason: String?) async throws -> OrderDTO?
}

enum OrderRepositoryError: Error, Equatable {
    case illegalTransition(from: OrderStatus, to: OrderStatus)
}
