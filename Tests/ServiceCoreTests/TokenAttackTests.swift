import Crypto
import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import ServiceAuth
import ServiceCore
import ServiceTesting
import Testing

/// Tokens an attacker could bring: each is refused as `invalid` (a 401 at the edge), never accepted or crashed on.
@Suite struct TokenAttackTests {
    /// Claims of any shape, signed without the shop's own checks (an attacker's token).
    struct RawClaims: JWTPayload {
        var sub: String = "user-1"
        var role: String = "admin"
        var iss: String? = TokenClaims.issuer
        var aud: String? = TokenClaims.audience
        var iat: Double = Date.now.timeIntervalSince1970
        var nbf: Double? = Date.now.timeIntervalSince1970
        var exp: Double = Date.now.timeIntervalSince1970 + 600
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func sign(_ claims: RawClaims, with key: SigningKey, kid: String?) async throws -> String {
        let collection = await JWTKeyCollection().add(eddsa: key.privateKey, kid: kid.map { JWKIdentifier(string: $0) })
        return try await collection.sign(claims, kid: kid.map { JWKIdentifier(string: $0) })
    }

    static func segment(_ json: String) -> String { Base64URL.encode(Data(json.utf8)) }

    @Test func everyForgedOrMisdirectedTokenIsRefused() async throws {
        let keys = try await TestKeys()
        let kid = keys.key.keyID
        let stranger = try SigningKey.generate()
        let payload = Self.segment(
            #"{"sub":"user-1","role":"admin","iss":"shop-auth","aud":"shop","iat":\#(Int(Date.now.timeIntervalSince1970)),"nbf":\#(Int(Date.now.timeIntervalSince1970)),"exp":\#(Int(Date.now.timeIntervalSince1970) + 600)}"#
        )
        // HS256 keyed with the public key's bytes, as if the verifier took the header's word for the algorithm.
        let hsHeader = Self.segment(#"{"alg":"HS256","typ":"JWT","kid":"\#(kid)"}"#)
        let hmac = HMAC<SHA256>.authenticationCode(
            for: Data("\(hsHeader).\(payload)".utf8), using: SymmetricKey(data: keys.key.privateKey.publicKey.rawRepresentation)
        )
        let good = try await Self.sign(RawClaims(), with: keys.key, kid: kid)
        var tampered = good.split(separator: ".").map(String.init)
        tampered[1] = payload  // same signature, other payload
        var wrongIssuer = RawClaims()
        wrongIssuer.iss = "evil"
        var noIssuer = RawClaims()
        noIssuer.iss = nil
        var wrongAudience = RawClaims()
        wrongAudience.aud = "another-system"
        var noAudience = RawClaims()
        noAudience.aud = nil
        var expired = RawClaims()
        expired.exp = Date.now.timeIntervalSince1970 - 10
        var notYet = RawClaims()
        notYet.nbf = Date.now.timeIntervalSince1970 + 3600
        var unknownRole = RawClaims()
        unknownRole.role = "root"

        let attacks: [(String, String)] = [
            ("alg none", "\(Self.segment(#"{"alg":"none","typ":"JWT","kid":"\#(kid)"}"#)).\(payload)."),
            ("alg none without kid", "\(Self.segment(#"{"alg":"none"}"#)).\(payload)."),
            ("HS256 with the public key", "\(hsHeader).\(payload).\(Base64URL.encode(Data(hmac)))"),
            ("tampered payload", tampered.joined(separator: ".")),
            ("wrong issuer", try await Self.sign(wrongIssuer, with: keys.key, kid: kid)),
            ("no issuer", try await Self.sign(noIssuer, with: keys.key, kid: kid)),
            ("wrong audience", try await Self.sign(wrongAudience, with: keys.key, kid: kid)),
            ("no audience", try await Self.sign(noAudience, with: keys.key, kid: kid)),
            ("expired", try await Self.sign(expired, with: keys.key, kid: kid)),
            ("not yet valid", try await Self.sign(notYet, with: keys.key, kid: kid)),
            ("unknown role", try await Self.sign(unknownRole, with: keys.key, kid: kid)),
            ("unknown key id", try await Self.sign(RawClaims(), with: stranger, kid: stranger.keyID)),
            ("a stranger's key under our key id", try await Self.sign(RawClaims(), with: stranger, kid: kid)),
            ("our key without a key id", try await Self.sign(RawClaims(), with: keys.key, kid: nil)),
            ("garbage header", "\(Self.segment("not json")).\(payload).c2ln"),
        ]
        for (what, token) in attacks {
            await #expect(throws: TokenVerifier.Failure.self, "\(what)") { try await keys.verifier.verify(token) }
        }
        // The control: the same claims, properly signed, pass.
        #expect(try await keys.verifier.verify(good).role == .admin)
        // Clock skew: a not-before 10 s ahead is tolerated, one a minute ahead is not.
        var skewed = RawClaims()
        skewed.nbf = Date.now.timeIntervalSince1970 + 10
        #expect(try await keys.verifier.verify(try await Self.sign(skewed, with: keys.key, kid: kid)).role == .admin)
        skewed.nbf = Date.now.timeIntervalSince1970 + 60
        await #expect(throws: TokenVerifier.Failure.self) { try await keys.verifier.verify(try await Self.sign(skewed, with: keys.key, kid: kid)) }
    }

    @Test func aRotatedKeyKeepsItsTokensValidUntilTheyExpire() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotate-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/auth/signing-key"
        let logger = Logger(label: "t")
        let old = try SigningKey.loadOrCreate(environmentValue: nil, path: path, logger: logger)
        let oldToken = try await TokenIssuer(signingKey: old).issue(subject: "a", role: .user, email: nil).token

        let new = try SigningKey.rotate(path: path, retiredPath: path + ".retired", logger: logger)
        #expect(new.keyID != old.keyID)
        #expect(try SigningKey.loadOrCreate(environmentValue: nil, path: path, logger: logger).keyID == new.keyID)
        let attributes = try FileManager.default.attributesOfItem(atPath: path + ".retired")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // Only the public half of the retired key is kept.
        let retiredText = try String(contentsOfFile: path + ".retired", encoding: .utf8)
        #expect(!retiredText.contains(Base64URL.encode(old.privateKey.rawRepresentation)))
        #expect(retiredText.contains(old.published.x))

        let retired = try SigningKey.loadRetired(environmentValue: nil, path: path + ".retired", keepFor: .seconds(3600))
        #expect(retired.map(\.keyID) == [old.keyID])
        let issuer = await TokenIssuer(signingKey: new, retiredKeys: retired)
        #expect(issuer.jwks.keys.compactMap { $0.keyIdentifier?.string } == [new.keyID, old.keyID])
        let verifier = TokenVerifier(jwks: issuer.jwks, logger: logger)
        #expect(try await verifier.verify(oldToken).subject == "a")
        #expect(try await verifier.verify(try await issuer.issue(subject: "b", role: .user, email: nil).token).subject == "b")

        // Once the longest token lifetime has passed, the retired key is no longer published.
        let later = Date.now.addingTimeInterval(3601)
        #expect(try SigningKey.loadRetired(environmentValue: nil, path: path + ".retired", keepFor: .seconds(3600), now: later).isEmpty)
    }
}

extension TokenAttackTests {
    @Test func aWithdrawnKeyStopsVerifyingOnceTheKeysAreFetchedAgain() async throws {
        let leaked = try SigningKey.generate()
        let current = try SigningKey.generate()
        let published = NIOLockedValueBox(SigningKey.jwks([current.published, leaked.published]))
        // Keys are fetched again on every verification here (a lifetime of zero), as they are every 5 minutes in service.
        let verifier = TokenVerifier(
            source: { published.withLockedValue { $0 } }, logger: Logger(label: "t"), refetchInterval: .zero, keyLifetime: .zero)
        let stolen = try await TokenIssuer(signingKey: leaked).issue(subject: "mallory", role: .admin, email: nil).token
        #expect(try await verifier.verify(stolen).subject == "mallory")
        #expect(verifier.cachedIdentity(for: stolen) != nil)

        // The auth service stops publishing the leaked key: the next fetch drops it, and the tokens it verified with it.
        published.withLockedValue { $0 = SigningKey.jwks([current.published]) }
        #expect(
            try await verifier.verify(try await TokenIssuer(signingKey: current).issue(subject: "a", role: .user, email: nil).token).subject == "a")
        #expect(verifier.cachedIdentity(for: stolen) == nil)
        await #expect(throws: TokenVerifier.Failure.self) { try await verifier.verify(stolen) }
    }
}
