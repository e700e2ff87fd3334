import Foundation
import HummingbirdTesting
import OrderService
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

@Suite struct OrderServiceTests {
    static let catalog: [(String, ProductUpdate)] = [
        ("product-1", ProductUpdate(name: "Wireless Mouse", price: 29.99, stock: 100)),
        ("product-2", ProductUpdate(name: "Keyboard", price: 89.5, stock: 10)),
    ]
    static let address = #"{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}"#

    static func order(_ items: String) -> String { #"{"items":\#(items),"shippingAddress":\#(address)}"# }

    @Test(arguments: TestDatabase.available)
    func ordersArePricedFromTheCatalogAndReadBackByTheirOwner(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await harness.withCatalog(Self.catalog) { inventoryURL in
                let alice = try await harness.keys.token("alice")
                let bob = try await harness.keys.token("bob")
                let admin = try await harness.keys.token("admin-1", role: .admin)
                try await buildOrderService(harness.order(inventoryURL: inventoryURL)).test(.router) { client in
                    let body = Self.order(
                        #"[{"productId":"product-1","quantity":2,"price":29.99,"name":"ignored"},{"productId":"product-2","quantity":1,"price":89.5}]"#
                    )
                    let order = try await client.execute(uri: "/orders", method: .post, headers: .bearer(alice), body: .json(body)) {
                        response async throws in
                        #expect(response.status == .created)
                        return try response.json(OrderDTO.self)
                    }
                    #expect(order.status == "pending")
                    #expect(order.userId == "alice")
                    #expect(order.totalAmount == 149.48)
                    #expect(order.items.map(\.name) == ["Wireless Mouse", "Keyboard"])

                    try await client.execute(uri: "/orders/\(order.id)", method: .get, headers: .bearer(alice)) { response async throws in
                        #expect(response.status == .ok)
                        #expect(try response.json(OrderDTO.self) == order)
                    }
                    try await client.execute(uri: "/orders/\(order.id)", method: .get, headers: .bearer(bob)) { #expect($0.status == .forbidden) }
                    try await client.execute(uri: "/orders/\(order.id)", method: .get, headers: .bearer(admin)) { #expect($0.status == .ok) }
                    try await client.execute(uri: "/orders/nope", method: .get, headers: .bearer(alice)) { #expect($0.status == .notFound) }
                    try await client.execute(uri: "/orders/\(order.id)", method: .get) { #expect($0.status == .unauthorized) }
                    try await client.execute(uri: "/orders/user/alice", method: .get, headers: .bearer(alice)) { response async throws in
                        #expect(try response.json([OrderDTO].self).map(\.id) == [order.id])
                    }
                    try await client.execute(uri: "/orders/user/alice", method: .get, headers: .bearer(bob)) { #expect($0.status == .forbidden) }
                    try await client.execute(uri: "/orders", method: .get, headers: .bearer(bob)) { response async throws in
                        #expect(try response.json(Paginated<OrderDTO>.self).pagination.total == 0)
                    }
                }
            }
        }
    }

    @Test func aClientCannotSetItsOwnPriceOrOrderUnknownProducts() async throws {
        try await Harness.with(.sqlite) { harness in
            try await harness.withCatalog(Self.catalog) { inventoryURL in
                let alice = try await harness.keys.token("alice")
                try await buildOrderService(harness.order(inventoryURL: inventoryURL)).test(.router) { client in
                    let cheap = Self.order(#"[{"productId":"product-1","quantity":1,"price":0.01}]"#)
                    try await client.execute(uri: "/orders", method: .post, headers: .bearer(alice), body: .json(cheap)) { response async throws in
                        #expect(response.status == .conflict)
                        let object = try response.object()
                        #expect(object["error"] as? String == "Price mismatch")
                        #expect((object["details"] as? [[String: String]])?.first?["field"] == "items.0.price")
                    }
                    let unknown = Self.order(#"[{"productId":"product-404","quantity":1,"price":1}]"#)
                    try await client.execute(uri: "/orders", method: .post, headers: .bearer(alice), body: .json(unknown)) { response async throws in
                        #expect(response.status == .badRequest)
                        #expect(String(buffer: response.body).contains("items.0.productId"))
                    }
                    try await client.execute(uri: "/orders", method: .get, headers: .bearer(alice)) { response async throws in
                        #expect(try response.json(Paginated<OrderDTO>.self).pagination.total == 0)
                    }
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func invalidOrdersAre400WithTheGuidesRules(_ engine: TestDatabase) async throws {
        let cases: [(String, String)] = [
            (#"{"shippingAddress":\#(Self.address)}"#, "items"),
            (Self.order("[]"), "items"),
            (Self.order(#"[{"productId":"product-1","quantity":0,"price":29.99}]"#), "items.0.quantity"),
            (Self.order(#"[{"productId":"product-1","quantity":1.5,"price":29.99}]"#), "items.0.quantity"),
            (Self.order(#"[{"productId":"product-1","quantity":1,"price":-3}]"#), "items.0.price"),
            (Self.order(#"[{"quantity":1,"price":29.99}]"#), "items.0.productId"),
            (Self.order(#"["product-1"]"#), "items.0"),
            (#"{"items":[{"productId":"product-1","quantity":1,"price":29.99}]}"#, "shippingAddress"),
            (
                #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"x","city":"y","country":"z"}}"#,
                "shippingAddress.zipCode"
            ),
            (
                #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":1,"city":"y","country":"z","zipCode":"1"}}"#,
                "shippingAddress.street"
            ),
            (Self.order(#"[{"productId":"product-1","quantity":1001,"price":29.99}]"#), "items.0.quantity"),
            (
                Self.order("[" + Array(repeating: #"{"productId":"product-1","quantity":1,"price":29.99}"#, count: 101).joined(separator: ",") + "]"),
                "items"
            ),
        ]
        try await Harness.with(engine) { harness in
            let alice = try await harness.keys.token("alice")
            // No catalog is needed: validation fails before any call to it.
            try await buildOrderService(harness.order(inventoryURL: "http://127.0.0.1:9")).test(.router) { client in
                for (body, field) in cases {
                    try await client.execute(uri: "/orders", method: .post, headers: .bearer(alice), body: .json(body)) { response async throws in
                        #expect(response.status == .badRequest, "\(body)")
                        let details = (try response.object()["details"] as? [[String: String]]) ?? []
                        #expect(details.contains { $0["field"] == field }, "\(body): \(details)")
                    }
                }
                // With a valid body and the catalog down, the answer is a quick 503, not a hang or a 500.
                let started = ContinuousClock.now
                defer { #expect(ContinuousClock.now - started < .seconds(4)) }
                try await client.execute(
                    uri: "/orders", method: .post, headers: .bearer(alice),
                    body: .json(Self.order(#"[{"productId":"product-1","quantity":1,"price":29.99}]"#))
                ) {
                    #expect($0.status == .serviceUnavailable)
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func listingPaginatesNewestFirst(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await harness.withCatalog(Self.catalog) { inventoryURL in
                let alice = try await harness.keys.token("alice")
                try await buildOrderService(harness.order(inventoryURL: inventoryURL)).test(.router) { client in
                    var ids: [String] = []
                    for quantity in 1...3 {
                        let body = Self.order(#"[{"productId":"product-1","quantity":\#(quantity),"price":29.99}]"#)
                        ids.append(
                            try await client.execute(uri: "/orders", method: .post, headers: .bearer(alice), body: .json(body)) {
                                try $0.json(OrderDTO.self).id
                            })
                    }
                    try await client.execute(uri: "/orders?page=1&limit=2", method: .get, headers: .bearer(alice)) { response async throws in
                        let page = try response.json(Paginated<OrderDTO>.self)
                        #expect(page.results.map(\.id) == [ids[2], ids[1]])
                        #expect(page.pagination == Paginated<OrderDTO>.Info(page: 1, limit: 2, total: 3, pages: 2))
                    }
                    try await client.execute(uri: "/orders?page=2&limit=2", method: .get, headers: .bearer(alice)) { response async throws in
                        #expect(try response.json(Paginated<OrderDTO>.self).results.map(\.id) == [ids[0]])
                    }
                    for query in ["limit=1000", "limit=0", "page=0", "page=abc", "limit=-1"] {
                        try await client.execute(uri: "/orders?\(query)", method: .get, headers: .bearer(alice)) { #expect($0.status == .badRequest) }
                    }
                    try await client.execute(uri: "/orders?page=9&limit=2", method: .get, headers: .bearer(alice)) { response async throws in
                        let page = try response.json(Paginated<OrderDTO>.self)
                        #expect(page.results.isEmpty && page.pagination.total == 3)
                    }
                }
            }
        }
    }

    @Test func cancellingFollowsTheStatusMachine() async throws {
        try await Harness.with(.sqlite) { harness in
            try await harness.withCatalog(Self.catalog) { inventoryURL in
                let alice = try await harness.keys.token("alice")
                try await buildOrderService(harness.order(inventoryURL: inventoryURL)).test(.router) { client in
                    let body = Self.order(#"[{"productId":"product-1","quantity":1,"price":29.99}]"#)
                    let id = try await client.execute(uri: "/orders", method: .post, headers: .bearer(alice), body: .json(body)) {
                        try $0.json(OrderDTO.self).id
                    }
                    try await client.execute(uri: "/orders/\(id)/cancel", method: .post, headers: .bearer(alice)) { response async throws in
                        #expect(response.status == .ok)
                        #expect(try response.json(OrderDTO.self).status == "cancelled")
                    }
                    try await client.execute(uri: "/orders/\(id)/cancel", method: .post, headers: .bearer(alice)) { response async throws in
                        #expect(response.status == .conflict)
                    }
                }
            }
        }
    }

    @Test func statusMachineAllowsOnlyLegalMoves() {
        let legal: Set<String> = [
            "pending>confirmed", "pending>paid", "confirmed>paid", "paid>shipped", "shipped>delivered",
            "pending>cancelled", "confirmed>cancelled", "paid>cancelled",
        ]
        for from in OrderStatus.allCases {
            for to in OrderStatus.allCases {
                #expect(from.canTransition(to: to) == legal.contains("\(from.rawValue)>\(to.rawValue)"), "\(from) → \(to)")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func productUpdatedEventsFeedThePricesOrdersAreCheckedAgainst(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let alice = try await harness.keys.token("alice")
            // The inventory service is down: the order service can only know the product from its replica.
            let configuration = harness.order(inventoryURL: "http://127.0.0.1:9")
            let log = try await EventLog.open(url: harness.eventLogURL, dataDirectory: harness.dataDirectory, logger: .init(label: "test-log"))
            let body = try JSONDecoder().decode(
                JSONValue.self, from: Data(#"{"items":[{"productId":"gadget","quantity":1,"price":12.5}],"shippingAddress":\#(Self.address)}"#.utf8)
            )
            try await withThrowingTaskGroup(of: Void.self) { background in
                // The PostgreSQL pool needs its run loop; a SQLite file needs nothing running.
                if engine == .postgres {
                    for service in log.database.services { background.addTask { try? await service.run() } }
                }
                defer { background.cancelAll() }
                try await RunningService.with([
                    {
                        var c = configuration; c.settings.onServerRunning = $0; return try await buildOrderService(c)
                    }
                ]) { ports in
                    let client = ServiceClient(name: "order", baseURL: "http://127.0.0.1:\(ports[0])")
                    let before = try await client.send(.POST, "/orders", body: body, bearer: alice)
                    #expect(before.status == 503)
                    try await log.publish(
                        try EventEnvelope(
                            type: EventType.productUpdated, source: "test", partitionKey: "gadget",
                            payload: ProductChanged(id: "gadget", name: "Gadget", price: 12.5, stock: 3, updatedAt: Timestamp.now())
                        )
                    )
                    try await eventually("the replica to have the product") {
                        try await client.send(.POST, "/orders", body: body, bearer: alice).status == 201
                    }
                }
            }
        }
    }
}
