import Foundation
import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceHTTP
import ShopContracts

/// Configuration of the sandbox payment provider: a stand-in for a card processor such as Stripe, run as its own
/// process with its own ledger, so the payment service talks to it exactly as it would to a real provider.
public struct PaymentProviderConfiguration: Sendable {
    public var settings: ServiceSettings
    /// The API's secret key (`PAYMENT_PROVIDER_KEY`); nil: generated once into `<DATA_DIR>/payment-provider/secret-key`.
    public var secretKey: String?
    /// How long the card that makes the provider time out keeps a request waiting (`PROVIDER_HANG_SECONDS`, default
    /// 120), after which it answers 503 without charging.
    public var hang: Duration

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(
            name: ServiceName.paymentProvider.rawValue, defaultPort: ServiceName.paymentProvider.port(), environment: environment
        )
        self.secretKey = environment.get("PAYMENT_PROVIDER_KEY").flatMap { $0.isEmpty ? nil : $0 }
        self.hang = .seconds(max(1, environment.int("PROVIDER_HANG_SECONDS", default: 120)))
    }
}

/// The provider's secret API key, shared by the provider and the payment service on one machine.
enum ProviderKey {
    /// `configured` when given, else the key in the data folder, made there (owner-only) the first time.
    static func loadOrCreate(configured: String?, dataDirectory: String) throws -> String {
        if let configured { return configured }
        let path = PaymentProviderKey.path(dataDirectory: dataDirectory)
        if let stored = PaymentProviderKey.read(dataDirectory: dataDirectory) { return stored }
        let key = "sk_test_" + ServiceSecrets.randomSecret()
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]
        )
        // Linked into place, never overwritten: when two processes race, the one that loses reads the winner's key.
        let temporary = path + ".\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        if link(temporary, path) != 0 {
            guard let stored = PaymentProviderKey.read(dataDirectory: dataDirectory) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
            }
            return stored
        }
        return key
    }
}
