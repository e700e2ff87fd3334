import Foundation

/// The correlation id carried by the current task, so outgoing calls and events inherit it.
public enum CorrelationID {
    /// Header that carries the id across HTTP calls.
    public static let headerName = "x-correlation-id"

    @TaskLocal public static var current: String?

    /// Returns `candidate` when it is a safe id (1–128 of `A-Z a-z 0-9 - _ . :`), otherwise a new UUID.
    public static func accept(_ candidate: String?) -> String {
        if let candidate, isValid(candidate) { return candidate }
        return generate()
    }

    /// A fresh correlation id.
    public static func generate() -> String { UUID().uuidString.lowercased() }

    /// True for a safe id: 1–128 of `A-Z a-z 0-9 - _ . :` (no spaces, quotes or control characters to inject into logs).
    public static func isValid(_ value: String) -> Bool {
        guard (1...128).contains(value.utf8.count) else { return false }
        return value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
                true
            default:
                false
            }
        }
    }
}
