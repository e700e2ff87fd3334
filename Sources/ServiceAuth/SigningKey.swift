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
    public var jwks: JWKS {
        JWKS(keys: [
            .octetKeyPair(
                .eddsa,
                identifier: JWKIdentifier(string: keyID),
                x: Base64URL.encode(privateKey.publicKey.rawRepresentation),
                y: nil,
                curve: .ed25519
            )
        ])
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

/// Base64url without padding (RFC 7515 §2).
public enum Base64URL {
    public static func encode(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
