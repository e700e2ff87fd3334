import HTTPTypes
import Hummingbird
import ServiceCore

/// The `Idempotency-Key` request header (IETF draft "The Idempotency-Key HTTP Header Field").
public enum IdempotencyKey {
    public static let name = HTTPField.Name("Idempotency-Key")!

    /// The header's value, if any: 1–255 printable ASCII characters, 400 otherwise.
    public static func header(of request: Request) throws -> String? {
        guard let key = request.headers[name] else { return nil }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw APIError.validation([.init(field: "Idempotency-Key", message: "\"Idempotency-Key\" must be 1 to 255 printable ASCII characters")])
        }
        return key
    }
}
