import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ShopContracts

/// The demo catalog `shop up` seeds through the gateway, as an admin would: each product is created only when missing,
/// so a restart never resets stock.
public enum DemoCatalog {
    public static let products: [(id: String, update: ProductUpdate)] = [
        ("product-1", ProductUpdate(name: "Wireless Mouse", price: 29.99, stock: 100)),
        ("product-2", ProductUpdate(name: "Mechanical Keyboard", price: 89.50, stock: 50)),
        ("product-3", ProductUpdate(name: "USB-C Cable", price: 9.99, stock: 500)),
        ("product-4", ProductUpdate(name: "27-inch Monitor", price: 249.00, stock: 20)),
    ]

    /// A step of seeding that failed.
    public struct SeedingFailed: Error, CustomStringConvertible {
        public var description: String
    }

    /// Logs in as the admin through `gatewayURL` and creates the missing products; answers how many it created.
    @discardableResult
    public static func seed(gatewayURL: String, adminEmail: String, adminPassword: String, client: HTTPClient = .shared) async throws -> Int {
        let login = try await send(client, .POST, gatewayURL + "/api/auth/login", body: CredentialCheck(email: adminEmail, password: adminPassword))
        guard login.status == .ok else { throw SeedingFailed(description: "admin login answered \(login.status.code)") }
        let token = try JSONDecoder().decode(TokenResponse.self, from: login.body).token
        var created = 0
        for (id, update) in products {
            let existing = try await send(client, .GET, gatewayURL + "/api/inventory/\(id)", body: Optional<String>.none)
            guard existing.status == .notFound else { continue }
            let put = try await send(client, .PUT, gatewayURL + "/api/inventory/\(id)", body: update, token: token)
            guard put.status == .created || put.status == .ok else {
                throw SeedingFailed(description: "PUT /api/inventory/\(id) answered \(put.status.code)")
            }
            created += 1
        }
        return created
    }

    static func send(
        _ client: HTTPClient,
        _ method: HTTPMethod,
        _ url: String,
        body: (some Encodable)?,
        token: String? = nil
    ) async throws -> (status: HTTPResponseStatus, body: ByteBuffer) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await client.execute(request, timeout: .seconds(10))
        return (response.status, try await response.body.collect(upTo: 1 << 20))
    }
}
