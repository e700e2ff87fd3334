import JWTKit
import Logging
import ServiceCache
import ServiceCore
import ServiceDiscovery
import ServiceHTTP

extension TokenVerifier {
    /// A verifier that fetches keys from the auth service at `authURL` (`/.well-known/jwks.json`) on first use and when
    /// a token names a key it does not know (key rotation).
    ///
    /// With `caches`, the key set goes through the process's caches (cache `jwks`, kept a minute, well inside the
    /// verifier's five-minute key lifetime): one fetch at a time per process, shared with every instance through Redis
    /// when there is one. A verifier that meets an unknown key id (at most once per its refetch interval) invalidates
    /// the cached set first, which also makes the other instances fetch afresh.
    public static func remote(authURL: String, logger: Logger, caches: Caches? = nil) -> TokenVerifier {
        let client = ServiceClient(name: "auth", baseURL: authURL, timeout: .seconds(3))
        let fetch: @Sendable () async throws -> JWKS? = {
            let response = try await client.get("/.well-known/jwks.json")
            guard response.isSuccess else { throw APIError.unavailable("auth service answered \(response.status) for its keys") }
            return try response.decode(JWKS.self)
        }
        guard let caches else { return TokenVerifier(source: { try await fetch()! }, logger: logger) }
        let keySets: Cache<JWKS> = caches.cache("jwks", configuration: CacheConfiguration(timeToLive: .seconds(60), maxEntries: 4))
        return TokenVerifier(
            refreshingSource: { refresh in
                if refresh { await keySets.invalidate(keys: ["jwks"]) }
                guard let jwks = try await keySets.get("jwks", load: fetch) else { throw APIError.unavailable("auth service answered no keys") }
                return jwks
            },
            logger: logger
        )
    }
}
