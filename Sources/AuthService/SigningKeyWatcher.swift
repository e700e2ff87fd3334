import Foundation
import Logging
import ServiceAuth
import ServiceLifecycle

/// Notices a rotation of the signing key in the data folder (`shop keys rotate` writes a new key and moves the old one's
/// public half to the retired list) and puts it into service without a restart: new tokens are signed with the new key
/// and the JWKS publishes it with the retired ones, which verifiers fetch when a token names a key id they do not know.
/// Checks the files every `interval`; a key from the environment (`AUTH_SIGNING_KEY`) is not watched.
struct SigningKeyWatcher: Service {
    let ring: KeyRing
    let configuration: AuthServiceConfiguration
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
            do {
                try await reload()
            } catch {
                logger.warning("Could not read the signing key files; keeping the current key", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Loads the key files and, when they name another key or other retired keys, replaces the ring's issuer.
    func reload() async throws {
        let current = ring.issuer
        let next = try await configuration.makeIssuer(logger: logger)
        guard next.signingKey.keyID != current.signingKey.keyID || next.retiredKeys.map(\.keyID) != current.retiredKeys.map(\.keyID) else { return }
        ring.replace(with: next)
        logger.notice(
            "Signing key changed; signing with the new key", metadata: ["keyId": "\(next.signingKey.keyID)", "retired": "\(next.retiredKeys.count)"])
    }
}

extension AuthServiceConfiguration {
    /// The issuer of the configured keys: the signing key (from the environment or the data folder, made there the
    /// first time) and the retired keys still published.
    func makeIssuer(logger: Logger) async throws -> TokenIssuer {
        let key = try SigningKey.loadOrCreate(environmentValue: signingKey, path: signingKeyPath, logger: logger)
        // A retired key is published as long as a token it signed may live.
        let keepRetired = Duration.seconds(max(tokenLifetimeSeconds, serviceTokenLifetimeSeconds))
        let retired = try SigningKey.loadRetired(environmentValue: retiredSigningKeys, path: retiredSigningKeysPath, keepFor: keepRetired)
        return await TokenIssuer(
            signingKey: key, retiredKeys: retired, userTokenLifetime: .seconds(tokenLifetimeSeconds),
            serviceTokenLifetime: .seconds(serviceTokenLifetimeSeconds)
        )
    }
}
