import ArgumentParser
import AuthService
import Foundation
import Logging
import ServiceAuth

/// `shop keys rotate`: replaces the token signing key in the data folder, keeping the old one published until the
/// tokens it signed have expired.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage the token signing key.", subcommands: [Rotate.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a new signing key; the old one stays in the JWKS until its tokens expire.",
            discussion:
                "Restart the auth service afterwards (a running `shop up`: stop and start it). Other services fetch the new key when they first see its id."
        )

        @Option(name: .customLong("data-dir"), help: "Data folder of the system (its auth/signing-key).")
        var dataDirectory = "./.shop"

        func run() async throws {
            var logger = Logger(label: "shop-keys")
            logger.logLevel = .info
            let path = AuthServiceConfiguration.signingKeyPath(dataDirectory: dataDirectory)
            let key = try SigningKey.rotate(path: path, retiredPath: path + ".retired", logger: logger)
            print("New signing key \(key.keyID) in \(path); the previous key is kept in \(path).retired")
        }
    }
}
