import Crypto
import Foundation
import JWTKit
import Logging

/// The Ed25519 key the auth service signs tokens with, and its public form (a JWK) that everyone verifies with.
public struct SigningKey: Sendable {
    public let privateKey: EdDSA.PrivateKey
    /// Key id: the first bytes of the public key's SHA-256, so a rotated key gets a new id.
    public let keyID: String

    public init(privateKey: EdDSA.PrivateKey) {
        self.privateKey = privateKey
        self.keyID = PublishedKey.keyID(of: privateKey.publicKey)
    }

    /// The public half, as published.
    public var published: PublishedKey { PublishedKey(publicKey: privateKey.publicKey) }

    /// A new random key.
    public static func generate() throws -> SigningKey {
        SigningKey(privateKey: try EdDSA.PrivateKey(curve: .ed25519))
    }

    /// The public key as a JWK set, as served at `/.well-known/jwks.json`.
    public var jwks: JWKS { Self.jwks([published]) }

    /// The public keys of `keys` as one JWK set: the current key and those retired by a rotation.
    public static func jwks(_ keys: [PublishedKey]) -> JWKS {
        JWKS(
            keys: keys.map { key in
                .octetKeyPair(.eddsa, identifier: JWKIdentifier(string: key.keyID), x: key.x, y: nil, curve: .ed25519)
            })
    }

    /// The private key as base64url text (the `d` of its JWK), for storage.
    var exported: String { Base64URL.encode(privateKey.rawRepresentation) }

    /// Loads the key from `AUTH_SIGNING_KEY` (base64url `d`) when given, else from `path`, generating and storing it there
    /// (mode 0600) on first start. The key itself is never logged.
    public static func loadOrCreate(environmentValue: String?, path: String, logger: Logger) throws -> SigningKey {
        if let environmentValue, !environmentValue.isEmpty {
            return SigningKey(privateKey: try EdDSA.PrivateKey(d: environmentValue, curve: .ed25519))
        }
        let fileManager = FileManager.default
        if let data = fileManager.contents(atPath: path), let text = String(data: data, encoding: .utf8) {
            return SigningKey(privateKey: try EdDSA.PrivateKey(d: text.trimmingCharacters(in: .whitespacesAndNewlines), curve: .ed25519))
        }
        let key = try generate()
        try fileManager.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try writePrivate(key.exported, to: path)
        logger.info("Generated a new token signing key", metadata: ["kid": "\(key.keyID)", "path": "\(path)"])
        return key
    }

    /// Writes `text` to `path`, readable and writable by the owner only (keys are secrets, and so is their history).
    static func writePrivate(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
    }
}

/// A public key that verifies tokens but cannot sign: the published half of a key, all that is kept of a retired one.
public struct PublishedKey: Sendable {
    public let publicKey: EdDSA.PublicKey
    public let keyID: String

    public init(publicKey: EdDSA.PublicKey) {
        self.publicKey = publicKey
        self.keyID = Self.keyID(of: publicKey)
    }

    /// The key as the JWK's `x`.
    public var x: String { Base64URL.encode(publicKey.rawRepresentation) }

    /// Key id: the first bytes of the public key's SHA-256, so a rotated key gets a new id.
    static func keyID(of publicKey: EdDSA.PublicKey) -> String {
        Base64URL.encode(Data(SHA256.hash(data: publicKey.rawRepresentation).prefix(12)))
    }
}

extension SigningKey {
    /// Keys retired by a rotation — public halves only — from `AUTH_RETIRED_SIGNING_KEYS` (comma-separated `x` values,
    /// each optionally `@` the Unix time it was retired) or the file at `path` (a line per key: `x` and that time).
    /// They are published, never used to sign, so tokens they signed verify until they expire; a key retired longer
    /// ago than `keepFor` (the longest token lifetime) is no longer published.
    public static func loadRetired(environmentValue: String?, path: String, keepFor: Duration, now: Date = .now) throws -> [PublishedKey] {
        let entries: [(x: Substring, retiredAt: Substring?)]
        if let environmentValue, !environmentValue.isEmpty {
            entries = environmentValue.split(separator: ",").map { item in
                let parts = item.trimmingCharacters(in: .whitespaces).split(separator: "@", maxSplits: 1)
                return (parts[0], parts.count == 2 ? parts[1] : nil)
            }
        } else if let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) {
            entries = text.split(separator: "\n").compactMap { line in
                let fields = line.split(separator: " ")
                return fields.count == 2 ? (fields[0], fields[1]) : nil
            }
        } else {
            return []
        }
        return try entries.compactMap { entry in
            if let retiredAt = entry.retiredAt {
                guard let time = TimeInterval(retiredAt) else { throw CocoaError(.fileReadCorruptFile) }
                guard now.timeIntervalSince1970 - time < TimeInterval(keepFor.components.seconds) else { return nil }
            }
            return PublishedKey(publicKey: try EdDSA.PublicKey(x: String(entry.x), curve: .ed25519))
        }
    }

    /// Rotates the key kept at `path`: the current key's public half joins the retired keys at `retiredPath` (with the
    /// time; its private half is destroyed), a new key takes its place. Services verifying tokens fetch the new key when
    /// they first see its id.
    public static func rotate(path: String, retiredPath: String, now: Date = .now, logger: Logger) throws -> SigningKey {
        let fileManager = FileManager.default
        // No key yet: the first one is generated, nothing is retired.
        guard fileManager.fileExists(atPath: path) else { return try loadOrCreate(environmentValue: nil, path: path, logger: logger) }
        let old = try loadOrCreate(environmentValue: nil, path: path, logger: logger)
        var retired = fileManager.contents(atPath: retiredPath).flatMap { String(data: $0, encoding: .utf8) } ?? ""
        retired += "\(old.published.x) \(Int(now.timeIntervalSince1970))\n"
        try writePrivate(retired, to: retiredPath)
        let key = try generate()
        try writePrivate(key.exported, to: path)
        logger.info("Rotated the token signing key", metadata: ["kid": "\(key.keyID)", "retired": "\(old.keyID)"])
        return key
    }
}

/// Base64url without padding (RFC 7515 §2).
public enum Base64URL {
    public static func encode(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
