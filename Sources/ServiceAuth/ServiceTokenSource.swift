import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import ServiceCore
import ServiceDiscovery

/// Where a service gets the token it calls other services with (the guide's `getServiceToken`): fetched when needed
/// and kept until a minute before it expires.
public final class ServiceTokenSource: ServiceCredentials {
    public let serviceID: String
    private let fetch: @Sendable () async throws -> (token: String, expiresIn: Int)
    private let cache = NIOLockedValueBox<(token: String, refreshAt: ContinuousClock.Instant)?>(nil)

    public init(serviceID: String, fetch: @escaping @Sendable () async throws -> (token: String, expiresIn: Int)) {
        self.serviceID = serviceID
        self.fetch = fetch
    }

    public func token() async throws -> String {
        if let cached = cache.withLockedValue({ $0 }), ContinuousClock.now < cached.refreshAt { return cached.token }
        let (token, expiresIn) = try await fetch()
        let keep = expiresIn > 120 ? expiresIn - 60 : max(expiresIn / 2, 1)
        cache.withLockedValue { $0 = (token, ContinuousClock.now + .seconds(keep)) }
        return token
    }

    /// Tokens from the auth service's `POST /auth/service`, for client `serviceID` with `secret`.
    public static func remote(authURL: String, serviceID: String, secret: String, http: HTTPClient = .betweenServices) -> ServiceTokenSource {
        let base = authURL.hasSuffix("/") ? String(authURL.dropLast()) : authURL
        return ServiceTokenSource(serviceID: serviceID) {
            var request = HTTPClientRequest(url: base + "/auth/service")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(ServiceLogin(serviceId: serviceID, serviceSecret: secret))))
            let response = try await http.execute(request, timeout: .seconds(5))
            let body = try await response.body.collect(upTo: 1 << 16)
            guard response.status == .ok else { throw ServiceLoginRefused(status: Int(response.status.code)) }
            let answer = try JSONDecoder().decode(ServiceToken.self, from: body)
            return (answer.token, answer.expiresIn)
        }
    }

    /// The token source of service `serviceID`: its secret is `secret` (`SERVICE_SECRET`) or, locally, the one in the data
    /// folder's secrets file.
    public static func forService(_ serviceID: String, authURL: String, secret: String?, dataDirectory: String, allServices: [String]) throws
        -> ServiceTokenSource
    {
        let secret = try secret ?? ServiceSecrets.loadOrCreate(dataDirectory: dataDirectory, services: allServices)[serviceID] ?? ""
        return .remote(authURL: authURL, serviceID: serviceID, secret: secret)
    }

    /// Tokens signed by `issuer` in process (the auth service's own calls).
    public static func local(issuer: TokenIssuer, serviceID: String, scopes: [String]) -> ServiceTokenSource {
        ServiceTokenSource(serviceID: serviceID) { try await issuer.issue(subject: serviceID, role: .service, email: nil, scopes: scopes) }
    }
}

/// Body of `POST /auth/service`.
public struct ServiceLogin: Codable, Sendable {
    public var serviceId: String
    public var serviceSecret: String
    public init(serviceId: String, serviceSecret: String) {
        self.serviceId = serviceId
        self.serviceSecret = serviceSecret
    }
}

/// Answer of `POST /auth/service`.
public struct ServiceToken: Codable, Sendable {
    public var token: String
    public var expiresIn: Int
    public init(token: String, expiresIn: Int) {
        self.token = token
        self.expiresIn = expiresIn
    }
}

struct ServiceLoginRefused: Error, CustomStringConvertible {
    var status: Int
    var description: String { "the auth service refused this service's credentials (\(status))" }
}
