import NIOConcurrencyHelpers

/// The auth service's current ``TokenIssuer``, replaced as a whole when the signing key changes (a rotation), so every
/// token is signed — and the JWKS served — with one consistent set of keys.
public final class KeyRing: Sendable {
    private let current: NIOLockedValueBox<TokenIssuer>

    public init(_ issuer: TokenIssuer) {
        current = NIOLockedValueBox(issuer)
    }

    /// The issuer to sign with now.
    public var issuer: TokenIssuer { current.withLockedValue { $0 } }

    /// Makes `issuer` the one to sign with from now on.
    public func replace(with issuer: TokenIssuer) {
        current.withLockedValue { $0 = issuer }
    }
}

extension ServiceTokenSource {
    /// Tokens signed in process with the ring's current key (the auth service's own calls).
    public static func local(ring: KeyRing, serviceID: String, scopes: [String]) -> ServiceTokenSource {
        ServiceTokenSource(serviceID: serviceID) { try await ring.issuer.issue(subject: serviceID, role: .service, email: nil, scopes: scopes) }
    }
}
