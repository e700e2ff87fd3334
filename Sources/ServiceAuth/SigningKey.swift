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
        let digest = SHA256.hash(data: privateKey.publicKey.rawRepresentation)
        self.keyID = Base64URL.encode(Data(digest.prefix(12)))
    }

    /// A new random key.
    public static func generate() throws -> SigningKey {
        SigningKey(privateKey: try EdDSA.PrivateKey(curve: .ed25519))
    }

    /// The public key as a JWK set, as served at `/.well-known/jwks.json`.
    public var jwks: JWKS { Self.jwks([self]) }

    /// The public keys of `keys` as one JWK set: the current key and those retired by a rotation.
    public static func jwks(_ keys: [SigningKey]) -> JWKS {
        JWKS(keys: keys.map { key in
            .octetKeyPair(
                .eddsa,
                identifier: JWKIdentifier(string: key.keyID),
                x: Base64URL.encode(key.privateKey.publicKey.rawRepresentation),
                y: nil,
                curve: .ed25519
            )
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
        guard fileManager.createFile(atPath: path, contents: Data(key.exported.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        logger.info("Generated a new token signing key", metadata: ["kid": "\(key.keyID)", "path": "\(path)"])
        return key
    }
}

extension SigningKey {
    /// Keys retired by a rotation, from `AUTH_RETIRED_SIGNING_KEYS` (base64url `d`s, comma-separated) or the file at
    /// `path` (a line per key: `d` and the Unix time it was retired). They are published, never used to sign, so tokens
    /// they signed verify until they expire; a key retired longer ago than `keepFor` (the longest token lifetime) is
    /// no longer published.
    public static func loadRetired(environmentValue: String?, path: String, keepFor: Duration, now: Date = .now) throws -> [SigningKey] {
        if let environmentValue, !environmentValue.isEmpty {
            return try environmentValue.split(separator: ",").map {
                SigningKey(privateKey: try EdDSA.PrivateKey(d: $0.trimmingCharacters(in: .whitespaces), curve: .ed25519))
            }
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 2, let retiredAt = TimeInterval(fields[1]) else { return nil }
            guard now.timeIntervalSince1970 - retiredAt < TimeInterval(keepFor.components.seconds) else { return nil }
            return SigningKey(privateKey: try EdDSA.PrivateKey(d: String(fields[0]), curve: .ed25519))
        }
    }

    /// Rotates the key kept at `path`: the current key joins the retired keys at `retiredPath` (with the time), a new
    /// key takes its place. Services verifying tokens fetch the new key when they first see its id.
    public static func rotate(path: String, retiredPath: String, now: Date = .now, logger: Logger) throws -> SigningKey {
        let fileManager = FileManager.default
        guard let data = fileManager.contents(atPath: path), let current = String(data: data, encoding: .utf8) else {
            return try loadOrCreate(environmentValue: nil, path: path, logger: logger)
        }
        let old = SigningKey(privateKey: try EdDSA.PrivateKey(d: current.trimmingCharacters(in: .whitespacesAndNewlines), curve: .ed25519))
        var retired = fileManager.contents(atPath: retiredPath).flatMap { String(data: $0, encoding: .utf8) } ?? ""
        retired += "\(old.exported) \(Int(now.timeIntervalSince1970))\n"
        guard fileManager.createFile(atPath: retiredPath, contents: Data(retired.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        let key = try generate()
        guard fileManager.createFile(atPath: path, contents: Data(key.exported.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
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
