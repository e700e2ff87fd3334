import JWTKit
import Logging
import ServiceCore
import ServiceDiscovery
import ServiceHTTP

extension TokenVerifier {
    /// A verifier that fetches keys from the auth service at `authURL` (`/.well-known/jwks.json`) on first use and when
    /// a token names a key it does not know (key rotation).
    public static func remote(authURL: String, logger: Logger) -> TokenVerifier {
        let client = ServiceClient(name: "auth", baseURL: authURL, timeout: .seconds(3))
        return TokenVerifier(
            source: {
                let response = try await client.get("/.well-known/jwks.json")
                guard response.isSuccess else { throw APIError.unavailable("auth service answered \(response.status) for its keys") }
                return try response.decode(JWKS.self)
            },
            logger: logger
        )
    }
}
