import Foundation
import NIOCore
import NIOHTTP1
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing

/// The API's edges as a new client meets them, through the gateway: strict JSON, the media type, methods a path does
/// not take, and one spelling and one type for the same error everywhere.
@Suite struct APIEdgeTests {
    static let signup = #"{"email":"edge@example.com","name":"Edge Case","password":"Secret123"}"#

    @Test func aTrailingCommaIsMalformedJSON() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                for body in [
                    #"{"email":"edge@example.com","name":"Edge Case","password":"Secret123",}"#,
                    #"{"email":"edge@example.com","name":"Edge Case","password":"Secret123","profile":{"a":[1,2,]}}"#,
                    #"{"email":"edge@example.com","name":"Edge Case","password":"Secret123" , }"#,
                ] {
                    let reply = try await shop.call(.POST, "/api/users", json: body)
                    #expect(reply.status == .badRequest, "\(body)")
                    #expect(reply.object["error"] as? String == "Malformed JSON body", "\(body)")
                }
                let login = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"admin@shop.local","password":"AdminPass1",}"#)
                #expect(login.status == .badRequest)
                // A comma inside a string is not a trailing comma; nothing was written by the refusals above.
                let created = try await shop.call(
                    .POST, "/api/users", json: #"{"email":"edge@example.com","name":"Edge, Case","password":"Secret123"}"#)
                #expect(created.status == .created)
            }
        }
    }

    @Test func aBodyThatIsNotJSONIs415WithTheAcceptedTypes() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                for type in ["text/plain", "application/xml", "application/x-www-form-urlencoded", "application/jsonx"] {
                    let reply = try await shop.call(.POST, "/api/users", json: Self.signup, headers: [("content-type", type)])
                    #expect(reply.status == .unsupportedMediaType, "\(type)")
                    #expect(reply.object["accepted"] as? [String] == ["application/json", "application/*+json"], "\(type)")
                    #expect(reply.headers.first(name: "accept-post") == "application/json, application/*+json", "\(type)")
                }
                let (user, token) = try await OrderLifecycleTests.customer(shop, email: "typed@example.com", name: "Typed")
                let patch = try await shop.call(
                    .PATCH, "/api/users/\(user)", json: #"{"name":"New"}"#, token: token, headers: [("content-type", "text/plain")])
                #expect(patch.status == .unsupportedMediaType)
                #expect(patch.headers.first(name: "accept-patch") == "application/json, application/*+json")
                // Parameters and structured-syntax types are JSON.
                let charset = try await shop.call(
                    .PATCH, "/api/users/\(user)", json: #"{"name":"Charset"}"#, token: token,
                    headers: [("content-type", "application/json; charset=utf-8")])
                #expect(charset.status == .ok)
                let merge = try await shop.call(
                    .PATCH, "/api/users/\(user)", json: #"{"name":"Merge"}"#, token: token,
                    headers: [("content-type", "application/merge-patch+json")])
                #expect(merge.status == .ok)
                let read = try await shop.call(.GET, "/api/users/\(user)", token: token)
                #expect(read.object["name"] as? String == "Merge")
            }
        }
    }

    @Test func aKnownPathWithAnotherMethodIs405WithAllow() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (user, token) = try await OrderLifecycleTests.customer(shop, email: "methods@example.com", name: "Methods")
                let cases: [(HTTPMethod, String, String)] = [
                    (.PUT, "/api/users/\(user)", "GET, HEAD, PATCH"),
                    (.DELETE, "/api/users", "POST"),
                    (.DELETE, "/api/orders/some-order", "GET, HEAD"),
                    (.GET, "/api/orders/some-order/cancel", "POST"),
                    (.PATCH, "/api/orders", "GET, HEAD, POST"),
                ]
                for (method, path, allow) in cases {
                    let reply = try await shop.call(method, path, token: token)
                    #expect(reply.status == .methodNotAllowed, "\(method) \(path)")
                    #expect(reply.headers.first(name: "allow") == allow, "\(method) \(path)")
                    #expect(reply.object["error"] as? String == "Method not allowed", "\(method) \(path)")
                }
                // HEAD works wherever GET does, as `Allow` says.
                let head = try await shop.call(.HEAD, "/api/inventory/product-1")
                #expect(head.status == .ok && head.body.readableBytes == 0)
                #expect(try await shop.call(.HEAD, "/api/users/\(user)", token: token).status == .ok)
                // A path the router resolves to a node without this method's handler, though a capture could take it:
                // 404, never a 405 naming the method that was refused.
                let userPath = try await shop.call(.GET, "/api/orders/user", token: token)
                #expect(userPath.status == .notFound && userPath.headers.first(name: "allow") == nil)
                // The gateway's own routes answer 405 with `Allow` too.
                let post = try await shop.call(.POST, "/health/live", json: "{}")
                #expect(post.status == .methodNotAllowed && post.headers.first(name: "allow") == "GET, HEAD")
                // An unknown path is 404, spelled the same by the gateway and by a service.
                let gateway = try await shop.call(.GET, "/api/nowhere", token: token)
                let service = try await shop.call(.GET, "/api/users/\(user)/nothing/here", token: token)
                #expect(gateway.status == .notFound && service.status == .notFound)
                #expect(gateway.object["error"] as? String == "Not found")
                #expect(service.object["error"] as? String == "Not found")
            }
        }
    }

    @Test func limitsInErrorBodiesAreNumbers() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
                let nested = try await shop.call(
                    .POST, "/api/users", json: #"{"email":"x@example.com","name":"X","password":"Secret123","profile":\#(deep)}"#)
                #expect(nested.status == .badRequest)
                #expect(nested.object["error"] as? String == "JSON body nested too deeply")
                #expect(nested.object["limit"] as? Int == JSONShape.maxDepth)
                #expect(!(nested.object["limit"] is String))

                let big = #"{"email":"x@y.com","name":""# + String(repeating: "n", count: 100_000) + #"","password":"Secret123"}"#
                let tooLarge = try await shop.call(.POST, "/api/users", json: big)
                #expect(tooLarge.status == .payloadTooLarge)
                #expect(tooLarge.object["limit"] as? Int == 64 * 1024)
            }
        }
    }

    /// Answers through the gateway speak the public API: `Location` names the public path, `Server` no internal service.
    @Test func answersThroughTheGatewayNameOnlyPublicPaths() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop, email: "paths@example.com", name: "Paths")
                let order = try await shop.call(
                    .POST, "/api/orders",
                    json:
                        #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}}"#,
                    token: token)
                #expect(order.status == .created)
                let id = try #require(order.object["id"] as? String)
                #expect(order.headers.first(name: "location") == "/api/orders/\(id)")
                for reply in [order, try await shop.call(.GET, "/api/inventory/product-1"), try await shop.call(.GET, "/api/nowhere")] {
                    let server = reply.headers.first(name: "server") ?? ""
                    #expect(server == "shop-gateway" || server.isEmpty, "\(server)")
                }
                #expect(try await shop.call(.GET, try #require(order.headers.first(name: "location")), token: token).status == .ok)
            }
        }
    }

    /// An order the stock cannot cover is cancelled, and says why; so does one its customer cancels.
    @Test(arguments: TestDatabase.available)
    func aCancelledOrderSaysWhy(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop, email: "why@example.com", name: "Why")
                func place(_ quantity: Int) async throws -> String {
                    let order = try await shop.call(
                        .POST, "/api/orders",
                        json:
                            #"{"items":[{"productId":"product-1","quantity":\#(quantity),"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}}"#,
                        token: token)
                    #expect(order.status == .created)
                    #expect(order.object["cancellationReason"] == nil)
                    return try #require(order.object["id"] as? String)
                }
                let tooMany = try await place(1000)  // the stock is 100
                let cancelled = try await eventually("the order to be cancelled") { () async throws -> [String: Any]? in
                    let read = try await shop.call(.GET, "/api/orders/\(tooMany)", token: token).object
                    return read["status"] as? String == "cancelled" ? read : nil
                }
                #expect(cancelled["cancellationReason"] as? String == "insufficient stock of product-1")

                let changedMind = try await place(1)
                let cancel = try await shop.call(.POST, "/api/orders/\(changedMind)/cancel", token: token)
                #expect(cancel.status == .ok)
                #expect(cancel.object["cancellationReason"] as? String == "cancelled by the customer")
                let read = try await shop.call(.GET, "/api/orders/\(changedMind)", token: token)
                #expect(read.object["cancellationReason"] as? String == "cancelled by the customer")
            }
        }
    }
}
