import Foundation
import JWTKit
import ServiceCore

/// Signs tokens with the auth service's key.
public struct TokenIssuer: Sendable {
    let keys: JWTKeyCollection
    public let signingKey: SigningKey
    /// Keys retired by a rotation: published for verification, never used to sign.
    public let retiredKeys: [PublishedKey]
    /// Lifetime of user tokens.
    public let userTokenLifetime: Duration
    /// Lifetime of service tokens.
    public let serviceTokenLifetime: Duration

    public init(
        signingKey: SigningKey, retiredKeys: [PublishedKey] = [], userTokenLifetime: Duration = .seconds(3600),
        serviceTokenLifetime: Duration = .seconds(900)
    ) async {
        self.signingKey = signingKey
        self.retiredKeys = retiredKeys.filter { $0.keyID != signingKey.keyID }
        self.keys = await JWTKeyCollection().add(eddsa: signingKey.privateKey, kid: JWKIdentifier(string: signingKey.keyID))
        self.userTokenLifetime = userTokenLifetime
        self.serviceTokenLifetime = serviceTokenLifetime
    }

    /// The keys that verify this issuer's tokens (current first, then retired ones), as served at
    /// `/.well-known/jwks.json`.
    public var jwks: JWKS { SigningKey.jwks([signingKey.published] + retiredKeys) }

    /// A signed token for `subject` with `role`, and its lifetime in seconds.
    public func issue(subject: String, role: Identity.Role, email: String?, scopes: [String] = [], now: Date = .now) async throws -> (
        token: String, expiresIn: Int
    ) {
        let lifetime = role == .service ? serviceTokenLifetime : userTokenLifetime
        let seconds = Int(lifetime.components.seconds)
        let claims = TokenClaims(
            subject: subject, role: role, email: email, scopes: role == .service ? scopes : [], issuedAt: now,
            expiresAt: now.addingTimeInterval(TimeInterval(seconds))
        )
        let token = try await keys.sign(claims, kid: JWKIdentifier(string: signingKey.keyID))
        return (token, seconds)
    }
}
