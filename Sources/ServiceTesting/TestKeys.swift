import Foundation
import Logging
import ServiceAuth
import ServiceCore

/// A signing key for a test, with the matching verifier and helpers to mint tokens, as the auth service would.
public struct TestKeys: Sendable {
    public let key: SigningKey
    public let issuer: TokenIssuer
    public let verifier: TokenVerifier

    public init() async throws {
        self.key = try SigningKey.generate()
        self.issuer = await TokenIssuer(signingKey: key)
        self.verifier = TokenVerifier(jwks: key.jwks, logger: Logger(label: "test"))
    }

    /// A valid token for `subject` with `role`.
    public func token(_ subject: String, role: Identity.Role = .user, email: String? = nil, scopes: [String] = []) async throws -> String {
        try await issuer.issue(subject: subject, role: role, email: email, scopes: scopes).token
    }

    /// A source of service tokens for `service` with `scopes`, signed by the test key (what `POST /auth/service` gives).
    public func serviceTokens(_ service: String, scopes: [String]) -> ServiceTokenSource {
        ServiceTokenSource(serviceID: service) { try await self.issuer.issue(subject: service, role: .service, email: nil, scopes: scopes) }
    }

    /// A token for `subject` that expired an hour ago.
    public func expiredToken(_ subject: String, role: Identity.Role = .user, scopes: [String] = []) async throws -> String {
        try await issuer.issue(subject: subject, role: role, email: nil, scopes: scopes, now: Date.now.addingTimeInterval(-7200)).token
    }

    /// The refusals every internal endpoint must give, as (what, token) pairs: no token, a user token, an admin
    /// token, a service token without `scope`, and an expired service token with it.
    public func intruders(for scope: String) async throws -> [(what: String, token: String?)] {
        [
            ("no token", nil),
            ("a user token", try await token("user-1")),
            ("an admin token", try await token("admin-1", role: .admin)),
            ("a service token without the scope", try await token("notification", role: .service, scopes: ["something:else"])),
            ("an expired service token", try await expiredToken("order", role: .service, scopes: [scope])),
        ]
    }
}
