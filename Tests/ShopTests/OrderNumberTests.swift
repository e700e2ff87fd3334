import Foundation
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

@testable import OrderService

@Suite struct OrderNumberTests {
    /// Orders placed at the same time get distinct, increasing numbers (the counter row), on both engines.
    @Test(arguments: TestDatabase.available)
    func concurrentOrdersGetDistinctNumbers(_ engine: TestDatabase) async throws {
        try await engine.withDatabase(migrations: OrderMigrations.all + MessagingMigrations.all) { database in
            let repository = SQLOrderRepository(database: database, events: OutboxPublisher(source: "test", onCommit: {}))
            let address = OrderDTO.Address(street: "1 Main St", city: "Springfield", country: "US", zipCode: "12345")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<40 {
                    group.addTask {
                        let order = OrderDTO(
                            id: "order-\(n)", userId: "user-\(n % 3)", status: "pending",
                            items: [.init(productId: "product-1", name: "Mouse", quantity: 1, price: 29.99)], shippingAddress: address,
                            totalAmount: 29.99, createdAt: Timestamp.now(), updatedAt: Timestamp.now()
                        )
                        try await repository.create(order)
                    }
                }
                try await group.waitForAll()
            }
            let numbers = try await database.withConnection { sql in
                try await sql.raw("SELECT seq FROM orders ORDER BY seq").all().map { try $0.decode(column: "seq", as: Int64.self) }
            }
            #expect(numbers == Array(1...40))
        }
    }
}
