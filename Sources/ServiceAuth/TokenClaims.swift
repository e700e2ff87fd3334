import Foundation
import JWTKit
import ServiceCore

/// The claims of every token the shop issues: who (`sub`), what role, for whom (`aud`), from and until when.
public struct TokenClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var role: String
    public var email: String?
    /// Space-separated scopes of a service token (OAuth 2.0 `scope`).
    public var scope: String?
    public var iss: IssuerClaim
    public var aud: AudienceClaim
    public var iat: IssuedAtClaim
    public var nbf: NotBeforeClaim
    public var exp: ExpirationClaim

    /// The issuer every shop token carries.
    public static let issuer = "shop-auth"
    /// The audience every shop token is for: the shop's services (a token another system issued with our key id for
    /// itself is not ours).
    public static let audience = "shop"
    /// Clock skew tolerated between the issuer and a verifier for `nbf`.
    static let leeway: TimeInterval = 30

    public init(subject: String, role: Identity.Role, email: String?, scopes: [String] = [], issuedAt: Date, expiresAt: Date) {
        self.sub = SubjectClaim(value: subject)
        self.role = role.rawValue
        self.email = email
        self.scope = scopes.isEmpty ? nil : scopes.sorted().joined(separator: " ")
        self.iss = IssuerClaim(value: Self.issuer)
        self.aud = AudienceClaim(value: Self.audience)
        self.iat = IssuedAtClaim(value: issuedAt)
        self.nbf = NotBeforeClaim(value: issuedAt)
        self.exp = ExpirationClaim(value: expiresAt)
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try self.exp.verifyNotExpired()
        try self.nbf.verifyNotBefore(currentDate: Date().addingTimeInterval(Self.leeway))
        guard self.iss.value == Self.issuer else {
            throw JWTError.claimVerificationFailure(failedClaim: self.iss, reason: "unexpected issuer")
        }
        try self.aud.verifyIntendedAudience(includes: Self.audience)
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
