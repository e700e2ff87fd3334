import Foundation

/// Where the sandbox payment provider's secret key lives on one machine, for the provider (which makes it) and the
/// payment service (which reads it): `<data folder>/payment-provider/secret-key`.
public enum PaymentProviderKey {
    /// The key file in `dataDirectory`.
    public static func path(dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent("payment-provider/secret-key")
    }

    /// The key in `dataDirectory`, if the provider has made it.
    public static func read(dataDirectory: String) -> String? {
        (try? String(contentsOfFile: path(dataDirectory: dataDirectory), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            .nilIfEmpty
    }

    /// The key is neither configured (`PAYMENT_PROVIDER_KEY`) nor in the data folder.
    public struct Missing: Error, CustomStringConvertible {
        public var path: String
        public init(path: String) { self.path = path }
        public var description: String { "no payment provider key: set PAYMENT_PROVIDER_KEY or start the provider, which makes \(path)" }
    }
}

extension String {
    fileprivate var nilIfEmpty: String? { isEmpty ? nil : self }
}
