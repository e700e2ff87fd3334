import Foundation
import ServiceCore

/// Finds what Foundation's JSON parser lets through silently: an object with the same key twice (it keeps one value, so
/// two readers of one body could disagree), a comma before a closing bracket (`{"a":1,}`, which RFC 8259 does not
/// allow and other readers refuse) and nesting deeper than a service needs (a cheap way to burn stack and CPU). Written by hand: no JSON parser in reach reports duplicate keys. One pass over the bytes; stops at the first
/// problem.
public enum JSONShape {
    public enum Problem: Error, Equatable {
        case duplicateKey(String)
        case trailingComma
        case tooDeep(limit: Int)
    }

    /// Deepest nesting of objects and arrays a request body may have.
    public static let maxDepth = 32

    private struct Frame {
        var isObject: Bool
        var expectingKey: Bool
        var keys: Set<String> = []
    }

    /// The first problem in `bytes`, or nil. Meant for input that parses as JSON; on anything else it answers without
    /// crashing, and the parser's own error is the one to report.
    public static func problem(in bytes: some Collection<UInt8>, maxDepth: Int = maxDepth) -> Problem? {
        var stack: [Frame] = []
        var iterator = bytes.makeIterator()
        // The last byte outside strings that is not white space.
        var previous: UInt8 = 0
        while let byte = iterator.next() {
            defer {
                switch byte {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): break
                default: previous = byte
                }
            }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard stack.count < maxDepth else { return .tooDeep(limit: maxDepth) }
                let isObject = byte == UInt8(ascii: "{")
                stack.append(Frame(isObject: isObject, expectingKey: isObject))
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if previous == UInt8(ascii: ",") { return .trailingComma }
                _ = stack.popLast()
            case UInt8(ascii: ","):
                if let last = stack.indices.last, stack[last].isObject { stack[last].expectingKey = true }
            case UInt8(ascii: "\""):
                // A string: its raw bytes up to the closing quote (escapes kept as written).
                var raw: [UInt8] = []
                var escaped = false
                while let next = iterator.next() {
                    if escaped {
                        escaped = false
                    } else if next == UInt8(ascii: "\\") {
                        escaped = true
                    } else if next == UInt8(ascii: "\"") {
                        break
                    }
                    raw.append(next)
                }
                guard let last = stack.indices.last, stack[last].isObject, stack[last].expectingKey else { continue }
                stack[last].expectingKey = false
                // Keys are compared as the decoder will see them: as Swift strings (canonically equivalent spellings are
                // one key), with escapes resolved ("a" and "\u0061" are the same key).
                let key = raw.contains(UInt8(ascii: "\\")) ? unescape(raw) : String(decoding: raw, as: UTF8.self)
                if !stack[last].keys.insert(key).inserted {
                    return .duplicateKey(key)
                }
            default:
                continue
            }
        }
        return nil
    }

    private static func unescape(_ raw: [UInt8]) -> String {
        (try? JSONDecoder().decode(String.self, from: Data([UInt8(ascii: "\"")] + raw + [UInt8(ascii: "\"")])))
            ?? String(decoding: raw, as: UTF8.self)
    }
}
