import Foundation
import HummingbirdTesting
import InventoryService
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing

@Suite struct InventoryServiceTests {
    @Test(arguments: TestDatabase.available)
    func adminsWriteTheCatalogAndAnyoneReadsIt(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let admin = try await harness.keys.token("admin-1", role: .admin)
            let user = try await harness.keys.token("user-1")
            try await buildInventoryService(harness.inventory()).test(.router) { client in
                try await client.execute(uri: "/inventory/product-1", method: .get) { #expect($0.status == .notFound) }
                let body = #"{"name":"Wireless Mouse","price":29.99,"stock":100}"#
                try await client.execute(uri: "/inventory/product-1", method: .put, headers: .bearer(user), body: .json(body)) {
                    response async throws in
                    #expect(response.status == .forbidden)
                }
                try await client.execute(uri: "/inventory/product-1", method: .put, body: .json(body)) { #expect($0.status == .unauthorized) }
                try await client.execute(uri: "/inventory/product-1", method: .put, headers: .bearer(admin), body: .json(body)) {
                    response async throws in
                    #expect(response.status == .created)
                    let product = try response.json(ProductDTO.self)
                    #expect(product.id == "product-1" && product.price == 29.99 && product.stock == 100)
                }
                try await client.execute(
                    uri: "/inventory/product-1", method: .put, headers: .bearer(admin),
                    body: .json(#"{"name":"Wireless Mouse","price":24.5,"stock":3}"#)
                ) { #expect($0.status == .ok) }
                try await client.execute(uri: "/inventory/product-1", method: .get) { response async throws in
                    let product = try response.json(ProductDTO.self)
                    #expect(product.price == 24.5 && product.stock == 3)
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func badProductsAre400AndChangeNothing(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let admin = try await harness.keys.token("admin-1", role: .admin)
            try await buildInventoryService(harness.inventory()).test(.router) { client in
                let bad = [
                    #"{"name":"X","price":-1,"stock":1}"#,
                    #"{"name":"X","price":1.999,"stock":1}"#,
                    #"{"name":"X","price":1e-9,"stock":1}"#,
                    #"{"name":"X","price":0.001,"stock":1}"#,
                    #"{"name":"X\u0000","price":1,"stock":1}"#,
                    #"{"name":"X","price":1,"stock":-2}"#,
                    #"{"name":"X","price":1,"stock":1.5}"#,
                    #"{"name":"","price":1,"stock":1}"#,
                    #"{"name":"X","price":"1","stock":1}"#,
                    #"{"price":1,"stock":1}"#,
                    #"{"name":"X","price":1,"stock":1,"extra":1}"#,
                    #"not json"#,
                ]
                for body in bad {
                    try await client.execute(uri: "/inventory/p-1", method: .put, headers: .bearer(admin), body: .json(body)) {
                        response async throws in
                        #expect(response.status == .badRequest, "\(body)")
                        #expect(response.errorMessage != nil)
                    }
                }
                try await client.execute(
                    uri: "/inventory/bad%20id", method: .put, headers: .bearer(admin), body: .json(#"{"name":"X","price":1,"stock":1}"#)
                ) {
                    #expect($0.status == .badRequest)
                }
                try await client.execute(uri: "/inventory/p-1", method: .get) { #expect($0.status == .notFound) }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func theCatalogListsInPages(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let admin = try await harness.keys.token("admin-1", role: .admin)
            try await buildInventoryService(harness.inventory()).test(.router) { client in
                for index in 1...5 {
                    try await client.execute(
                        uri: "/inventory/p-\(index)", method: .put, headers: .bearer(admin),
                        body: .json(#"{"name":"P\#(index)","price":1.5,"stock":1}"#)
                    ) { #expect($0.status == .created) }
                }
                try await client.execute(uri: "/inventory?page=2&limit=2", method: .get) { response async throws in
                    let page = try response.json(Paginated<ProductDTO>.self)
                    #expect(page.results.map(\.id) == ["p-3", "p-4"])
                    #expect(page.pagination == Paginated<ProductDTO>.Info(page: 2, limit: 2, total: 5, pages: 3))
                }
            }
        }
    }
}
