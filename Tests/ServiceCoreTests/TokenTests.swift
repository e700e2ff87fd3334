import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import ServiceAuth
import ServiceCore
import ServiceTesting
import Testing

@Suite struct TokenTests {
    @Test func issuedTokensVerifyToTheirIdentity() async throws {
        let keys = try await TestKeys()
        let token = try await keys.token("user-1", role: .admin, email: "a@b.co")
        let identity = try await keys.verifier.verify(token)
        #expect(identity == Identity(subject: "user-1", role: .admin, email: "a@b.co", token: token))
        #expect(keys.verifier.cachedIdentity(for: token)?.subject == "user-1")
    }

    @Test func expiredTamperedAndForeignTokensAreRefused() async throws {
        let keys = try await TestKeys()
        let other = try await TestKeys()
        await #expect(throws: TokenVerifier.Failure.invalid) { try await keys.verifier.verify(try await keys.expiredToken("u")) }
        await #expect(throws: TokenVerifier.Failure.self) { try await keys.verifier.verify(try await other.token("u")) }
        let token = try await keys.token("u")
        var parts = token.split(separator: ".").map(String.init)
        // Claim to be an admin with the original signature.
        let forged = try JSONEncoder().encode(TokenClaims(subject: "u", role: .admin, email: nil, issuedAt: .now, expiresAt: .now + 60))
        parts[1] = Base64URL.encode(forged)
        await #expect(throws: TokenVerifier.Failure.self) { try await keys.verifier.verify(parts.joined(separator: ".")) }
        await #expect(throws: TokenVerifier.Failure.malformed) { try await keys.verifier.verify("not-a-token") }
        #expect(keys.verifier.cachedIdentity(for: parts.joined(separator: ".")) == nil)
    }

    @Test func anUnknownKeyIDFetchesTheKeysAgain() async throws {
        let old = try SigningKey.generate()
        let new = try SigningKey.generate()
        let published = NIOLockedValueBox(old.jwks)
        let fetches = NIOLockedValueBox(0)
        let verifier = TokenVerifier(
            source: {
                fetches.withLockedValue { $0 += 1 }
                return published.withLockedValue { $0 }
            },
            logger: Logger(label: "t"),
            refetchInterval: .zero
        )
        _ = try await verifier.verify(try await TokenIssuer(signingKey: old).issue(subject: "a", role: .user, email: nil).token)
        #expect(fetches.withLockedValue { $0 } == 1)
        // The auth service rotated its key: a token with the new kid makes the verifier fetch the keys again.
        published.withLockedValue { $0 = new.jwks }
        let identity = try await verifier.verify(try await TokenIssuer(signingKey: new).issue(subject: "b", role: .user, email: nil).token)
        #expect(identity.subject == "b")
        #expect(fetches.withLockedValue { $0 } == 2)
    }

    @Test func signingKeysAreGeneratedOnceWithPrivateModeOrReadFromTheEnvironment() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/auth/signing-key"
        let first = try SigningKey.loadOrCreate(environmentValue: nil, path: path, logger: Logger(label: "t"))
        let again = try SigningKey.loadOrCreate(environmentValue: nil, path: path, logger: Logger(label: "t"))
        #expect(first.keyID == again.keyID)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let fromEnvironment = try SigningKey.loadOrCreate(
            environmentValue: Base64URL.encode(first.privateKey.rawRepresentation), path: directory + "/unused", logger: Logger(label: "t")
        )
        #expect(fromEnvironment.keyID == first.keyID)
        #expect(!FileManager.default.fileExists(atPath: directory + "/unused"))
        // The JWKS carries only the public half.
        let jwks = String(decoding: try JSONEncoder().encode(first.jwks), as: UTF8.self)
        #expect(!jwks.contains("\"d\""))
        #expect(jwks.contains("\"OKP\"") && jwks.contains("\"EdDSA\""))
    }

    @Test func bearerHeadersParse() {
        #expect(BearerToken.extract("Bearer abc") == "abc")
        #expect(BearerToken.extract("bearer   abc ") == "abc")
        #expect(BearerToken.extract("Basic abc") == nil)
        #expect(BearerToken.extract("Bearer") == nil)
        #expect(BearerToken.extract(nil) == nil)
    }
}

@Suite struct ServiceSecretsTests {
    @Test func processesStartingTogetherAgreeOnOneSetOfSecrets() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let services = ["auth", "order", "payment"]
        let results = try await withThrowingTaskGroup(of: [String: String].self) { group in
            for _ in 0..<16 {
                group.addTask { try ServiceSecrets.loadOrCreate(dataDirectory: directory, services: services) }
            }
            return try await group.reduce(into: [[String: String]]()) { $0.append($1) }
        }
        #expect(Set(results).count == 1)
        #expect(results.first?.keys.sorted() == services)
        #expect(try ServiceSecrets.loadOrCreate(dataDirectory: directory, services: services) == results.first)
        let attributes = try FileManager.default.attributesOfItem(atPath: ServiceSecrets.path(in: directory))
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // A newer version with one more service keeps the existing secrets.
        let extended = try ServiceSecrets.loadOrCreate(dataDirectory: directory, services: services + ["inventory"])
        #expect(extended.filter { $0.key != "inventory" } == results.first)
        #expect(extended["inventory"] != nil)
    }

    @Test func anUnreadableSecretsFileIsAnErrorNotANewSetOfSecrets() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = ServiceSecrets.path(in: directory)
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("not json".utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: (any Error).self) { try ServiceSecrets.loadOrCreate(dataDirectory: directory, services: ["auth"]) }
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "not json")
    }

    @Test func secretsCompareInFullAndParseFromTheEnvironmentForm() {
        #expect(ServiceSecrets.constantTimeEquals("abc", "abc"))
        #expect(!ServiceSecrets.constantTimeEquals("abc", "abd"))
        #expect(!ServiceSecrets.constantTimeEquals("abc", "abcd"))
        #expect(!ServiceSecrets.constantTimeEquals("", "a"))
        #expect(ServiceSecrets.parse("order=s1, payment = s2,broken") == ["order": "s1", "payment": "s2"])
        #expect(ServiceSecrets.randomSecret() != ServiceSecrets.randomSecret())
    }
}
