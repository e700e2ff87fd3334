import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceHTTP

/// Verifies bearer tokens locally against the auth service's published keys (JWKS), caching both the keys and the
/// tokens it has verified, so the common case costs a dictionary lookup instead of a signature check.
public final class TokenVerifier: Sendable {
    /// Where public keys come from: the auth service's `/.well-known/jwks.json`, or a key in hand.
    public typealias KeySource = @Sendable () async throws -> JWKS
    /// A source told whether the keys it answered last time are known to be out of date (a token named a key they
    /// lack), so one that caches them fetches afresh.
    public typealias RefreshingKeySource = @Sendable (_ refresh: Bool) async throws -> JWKS

    /// Why a token was refused.
    public enum Failure: Error, Equatable {
        case malformed
        case invalid
    }

    struct CacheEntry {
        var identity: Identity
        var expiresAt: Date
    }

    struct State {
        var keys: JWTKeyCollection?
        var lastKeyFetch: ContinuousClock.Instant?
        var knownKeyIDs: Set<String> = []
        var cache: [String: CacheEntry] = [:]
    }

    let source: RefreshingKeySource
    let logger: Logger
    let state = NIOLockedValueBox(State())
    /// Most tokens kept in the verified cache; the cache is emptied when it would grow past this.
    let cacheLimit: Int
    /// Shortest time between two key fetches triggered by unknown key ids.
    let refetchInterval: Duration
    /// How long fetched keys are trusted before they are fetched again, so a key the auth service withdrew stops being
    /// accepted (the JWKS is served with the same max-age).
    let keyLifetime: Duration

    public convenience init(
        source: @escaping KeySource, logger: Logger, cacheLimit: Int = 10_000, refetchInterval: Duration = .seconds(5),
        keyLifetime: Duration = .seconds(300)
    ) {
        self.init(
            refreshingSource: { _ in try await source() }, logger: logger, cacheLimit: cacheLimit, refetchInterval: refetchInterval,
            keyLifetime: keyLifetime)
    }

    public init(
        refreshingSource source: @escaping RefreshingKeySource, logger: Logger, cacheLimit: Int = 10_000, refetchInterval: Duration = .seconds(5),
        keyLifetime: Duration = .seconds(300)
    ) {
        self.source = source
        self.logger = logger
        self.cacheLimit = cacheLimit
        self.refetchInterval = refetchInterval
        self.keyLifetime = keyLifetime
    }

    /// A verifier that trusts exactly `jwks` (tests, in-process wiring).
    public convenience init(jwks: JWKS, logger: Logger) {
        self.init(source: { jwks }, logger: logger)
    }

    /// The identity for a token already verified and not yet expired, without any suspension (the gateway's fast path).
    public func cachedIdentity(for token: String, now: Date = .now) -> Identity? {
        state.withLockedValue { state in
            guard let entry = state.cache[token] else { return nil }
            if entry.expiresAt <= now {
                state.cache[token] = nil
                return nil
            }
            return entry.identity
        }
    }

    /// Verifies `token` (signature, expiry, issuer, role) and returns who it identifies.
    public func verify(_ token: String) async throws -> Identity {
        if let identity = cachedIdentity(for: token) { return identity }
        guard token.utf8.count < 4096, token.split(separator: ".", omittingEmptySubsequences: false).count == 3 else {
            throw Failure.malformed
        }
        // The verifier fixes the algorithm (no `none`, no switch to HMAC keyed with a public key) and needs a key id.
        guard let header = Self.header(of: token), header.alg == Self.algorithm, let kid = header.kid, !kid.isEmpty else {
            logger.debug("Token refused", metadata: ["reason": "algorithm or key id"])
            throw Failure.invalid
        }
        // A key id we have not seen means the auth service rotated its key: fetch the keys again (rate limited). A key
        // id still unknown after that is refused (never verified with some default key).
        var keys = try await keyCollection(forceRefresh: false)
        if !state.withLockedValue({ $0.knownKeyIDs.contains(kid) }) {
            keys = try await keyCollection(forceRefresh: true)
            guard state.withLockedValue({ $0.knownKeyIDs.contains(kid) }) else {
                logger.debug("Token refused", metadata: ["reason": "unknown key id"])
                throw Failure.invalid
            }
        }
        let claims: TokenClaims
        do {
            claims = try await keys.verify(token, as: TokenClaims.self)
        } catch {
            logger.debug("Token refused", metadata: ["reason": "\(error)"])
            throw Failure.invalid
        }
        let identity = claims.identity(token: token)
        state.withLockedValue { state in
            if state.cache.count >= cacheLimit { state.cache.removeAll(keepingCapacity: true) }
            state.cache[token] = CacheEntry(identity: identity, expiresAt: claims.exp.value)
        }
        return identity
    }

    /// The only algorithm shop tokens are signed with (Ed25519).
    static let algorithm = "EdDSA"

    /// A token's header (`alg`, `kid`), read without verifying anything.
    struct Header: Decodable {
        var alg: String?
        var kid: String?
    }

    static func header(of token: String) -> Header? {
        guard let first = token.split(separator: ".", omittingEmptySubsequences: false).first, first.utf8.count < 1024 else { return nil }
        var base64 = first.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else { return nil }
        return try? JSONDecoder().decode(Header.self, from: data)
    }

    private func keyCollection(forceRefresh: Bool) async throws -> JWTKeyCollection {
        let now = ContinuousClock.now
        // The fetch time is taken before fetching, so many tokens with unknown key ids at once make one fetch, not many.
        let (current, fetch) = state.withLockedValue { state -> (JWTKeyCollection?, Bool) in
            let age = state.lastKeyFetch.map { now - $0 }
            let stale = age.map { $0 >= keyLifetime } ?? true
            let mayFetch = age.map { $0 >= refetchInterval } ?? true
            // With no keys yet every caller fetches (nothing to answer with otherwise); after that, at most once per
            // `refetchInterval`, when the keys are stale or a token names an unknown key.
            let fetch = state.keys == nil || ((stale || forceRefresh) && mayFetch)
            if fetch { state.lastKeyFetch = now }
            return (state.keys, fetch)
        }
        if let current, !fetch { return current }
        let jwks: JWKS
        do {
            jwks = try await source(forceRefresh)
        } catch {
            logger.warning("Could not fetch signing keys", metadata: ["error": "\(error)"])
            if let current { return current }
            throw APIError.unavailable("Token keys unavailable")
        }
        let keys = try await JWTKeyCollection().add(jwks: jwks)
        let ids = Set(jwks.keys.compactMap { $0.keyIdentifier?.string })
        state.withLockedValue { state in
            // A key no longer published takes the tokens it verified with it.
            if !state.knownKeyIDs.isSubset(of: ids) { state.cache.removeAll() }
            state.keys = keys
            state.knownKeyIDs = ids
        }
        return keys
    }
}
