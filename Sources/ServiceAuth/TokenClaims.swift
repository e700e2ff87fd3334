import Foundation
import JWTKit
import ServiceCore

/// The claims of every token the shop issues: who (`sub`), what role, until when.
public struct TokenClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var role: String
    public var email: String?
    /// Space-separated scopes of a service token (OAuth 2.0 `scope`).
    public var scope: String?
    public var iss: IssuerClaim
    public var iat: IssuedAtClaim
    public var exp: ExpirationClaim

    /// The issuer every shop token carries.
    public static let issuer = "shop-auth"

    public init(subject: String, role: Identity.Role, email: String?, scopes: [String] = [], issuedAt: Date, expiresAt: Date) {
        self.sub = SubjectClaim(value: subject)
        self.role = role.rawValue
        self.email = email
        self.scope = scopes.isEmpty ? nil : scopes.sorted().joined(separator: " ")
        self.iss = IssuerClaim(value: Self.issuer)
        self.iat = IssuedAtClaim(value: issuedAt)
        self.exp = ExpirationClaim(value: expiresAt)
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try self.exp.verifyNotExpired()
        guard self.iss.value == Self.issuer else {
            throw JWTError.claimVerificationFailure(failedClaim: self.iss, reason: "unexpected issuer")
        }
        guard Identity.Role(rawValue: self.role) != nil else {
            throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "unknown role")
        }
    }

    /// The identity these claims describe, carrying `token`.
    public func identity(token: String) -> Identity {
        let role = Identity.Role(rawValue: role) ?? .user
        // Only service tokens carry scopes; a user token that claims some gets none.
        let scopes = role == .service ? Set((scope ?? "").split(separator: " ").map(String.init)) : []
        return Identity(subject: sub.value, role: role, email: email, token: token, scopes: scopes)
    }
}
