import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ServiceHTTP
import ShopContracts
import Testing

@testable import GatewayService

/// The OpenAPI documents cannot drift from the code: every route a service registers is in its document and every
/// documented operation is a route; the gateway's public document follows the gateway's own routing table and says
/// which operations need a token exactly where the gateway asks for one. (Every response the test suite makes the
/// services answer is checked against the documents too, by `scripts/contracts.py responses` after the run.)
@Suite struct OpenAPIContractTests {
    static let services: [ServiceName] = [.user, .auth, .order, .payment, .inventory, .notification]
    static let methods = ["get", "put", "post", "delete", "patch", "head", "options"]

    static func object(_ json: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    /// "METHOD path" for every operation of a document.
    static func operations(_ document: [String: Any]) -> Set<String> {
        var result: Set<String> = []
        for (path, item) in document["paths"] as? [String: Any] ?? [:] {
            for method in methods where (item as? [String: Any])?[method] != nil {
                result.insert("\(method.uppercased()) \(path)")
            }
        }
        return result
    }

    @Test func everyRouteIsDocumentedAndEveryOperationIsARoute() async throws {
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                for service in Self.services {
                    let document = try Self.object(try #require(OpenAPIDocuments.document(for: service)))
                    var routes: Set<String> = []
                    for (path, methods) in ServiceApplication.routes(ofService: service.rawValue) {
                        for method in methods { routes.insert("\(method) \(path)") }
                    }
                    #expect(!routes.isEmpty, "no routes recorded for \(service)")
                    let documented = Self.operations(document)
                    #expect(routes.subtracting(documented).sorted() == [], "\(service): routes missing from contracts/openapi/\(service).yaml")
                    #expect(documented.subtracting(routes).sorted() == [], "\(service): documented operations the service does not have")

                    // What the service serves is the document checked here.
                    let url = try #require(shop.serviceURLs[service])
                    let served = try await InProcessShop.call(shop.client, .GET, url + "/openapi.json")
                    #expect(served.status == .ok)
                    #expect(served.headers["content-type"].first?.hasPrefix("application/json") == true)
                    #expect(String(buffer: served.body) == OpenAPIDocuments.document(for: service))
                    #expect(document["openapi"] as? String == "3.1.0")
                }
                let served = try await shop.call(.GET, "/api/openapi.json")
                #expect(served.status == .ok)
                #expect(String(buffer: served.body) == OpenAPIDocuments.publicAPI)
                let head = try await shop.call(.HEAD, "/api/openapi.json")
                #expect(head.status == .ok)
                let post = try await shop.call(.POST, "/api/openapi.json", json: "{}")
                #expect(post.status == .methodNotAllowed)
            }
        }
    }

    @Test func thePublicDocumentFollowsTheGatewaysRoutingTable() throws {
        let table = GatewayRouter.table.map { "\($0.0) \($0.1) \($0.2.rawValue)" }
        let documented = OpenAPIDocuments.gatewayRoutes.map { "\($0.prefix) \($0.upstream) \($0.service)" }
        #expect(table == documented, "contracts/openapi/gateway.yaml's x-routes must be GatewayRouter.table")

        // Every public path is one a gateway route leads to, and every service path under a route's prefix is public.
        let publicDocument = try Self.object(OpenAPIDocuments.publicAPI)
        var expected: Set<String> = ["GET /api/openapi.json"]
        for (prefix, upstream, service) in GatewayRouter.table {
            let document = try Self.object(try #require(OpenAPIDocuments.document(for: service)))
            for operation in Self.operations(document) {
                let parts = operation.split(separator: " ", maxSplits: 1).map(String.init)
                let path = parts[1]
                guard path == upstream || path.hasPrefix(upstream + "/") else { continue }
                expected.insert("\(parts[0]) \(prefix)\(path.dropFirst(upstream.count))")
            }
        }
        #expect(Self.operations(publicDocument) == expected)
    }

    /// The document says an operation needs a token exactly where the gateway refuses a request without one.
    @Test func thePublicDocumentsSecurityIsTheGatewaysOwn() throws {
        let document = try Self.object(OpenAPIDocuments.publicAPI)
        let paths = try #require(document["paths"] as? [String: Any])
        var checked = 0
        for (path, item) in paths where path != "/api/openapi.json" {
            let item = try #require(item as? [String: Any])
            for method in Self.methods {
                guard let operation = item[method] as? [String: Any] else { continue }
                let security = operation["security"] as? [[String: Any]] ?? []
                // A concrete path for the pattern: every `{parameter}` filled in.
                let concrete = path.replacingOccurrences(of: #"\{[^}]+\}"#, with: "x1", options: .regularExpression)
                let prefix = try #require(GatewayRouter.table.first { GatewayRouter.matches(Substring(concrete), prefix: $0.0) }?.0)
                let isPublic = GatewayRouter.isPublic(method: HTTPMethod(rawValue: method.uppercased()), prefix: prefix, path: Substring(concrete))
                #expect(security.isEmpty == isPublic, "\(method.uppercased()) \(path): the document and the gateway disagree on needing a token")
                let responses = operation["responses"] as? [String: Any] ?? [:]
                #expect(responses["429"] != nil, "\(method.uppercased()) \(path): the gateway's rate limit answer is not documented")
                if !security.isEmpty { #expect(responses["401"] != nil) }
                checked += 1
            }
        }
        #expect(checked > 15)
    }
}
