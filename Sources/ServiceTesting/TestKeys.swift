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
    public func token(_ subject: String, role: Identity.Role = .user, email: String? = nil) async throws -> String {
        try await issuer.issue(subject: subject, role: role, email: email).token
    }

    /// A token for `subject` that expired an hour ago.
    public func expiredToken(_ subject: String) async throws -> String {
        try await issuer.issue(subject: subject, role: .user, email: nil, now: Date.now.addingTimeInterval(-7200)).token
    }
}
