import Crypto
import Foundation
import NIOCore
import ServiceCore

/// A request's parameters as Stripe's form encoding names them (`amount`, `card[number]`, `metadata[orderId]`), read from
/// an `application/x-www-form-urlencoded` body or from a JSON object (whose nested objects become bracketed names).
struct ProviderParameters: Sendable, Equatable {
    var values: [String: String]

    /// Parses `body` by its content type; anything malformed is a 400 naming the problem.
    static func parse(_ body: ByteBuffer, contentType: String?) throws -> ProviderParameters {
        let text = String(buffer: body)
        if contentType?.lowercased().hasPrefix("application/json") == true {
            return try json(text)
        }
        return try form(text)
    }

    static func form(_ text: String) throws -> ProviderParameters {
        var values: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]), !name.isEmpty, let value = decode(parts.count > 1 ? parts[1] : "") else {
                throw ProviderError.invalid("The request body is not valid form encoding")
            }
            guard values.updateValue(value, forKey: name) == nil else { throw ProviderError.invalid("Received \(name) twice", param: name) }
        }
        return try ProviderParameters(checked: values)
    }

    static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    static func json(_ text: String) throws -> ProviderParameters {
        guard let data = text.data(using: .utf8), let object = try? JSONDecoder().decode([String: JSONValue].self, from: data) else {
            throw ProviderError.invalid("The request body is not a JSON object")
        }
        var values: [String: String] = [:]
        func scalar(_ value: JSONValue, _ name: String) throws -> String {
            switch value {
            case .string(let text): return text
            case .number(let number) where number == number.rounded() && abs(number) < 1e15: return String(Int64(number))
            case .bool(let flag): return flag ? "true" : "false"
            default: throw ProviderError.invalid("Invalid value for \(name)", param: name)
            }
        }
        for (key, value) in object {
            if case .object(let nested) = value {
                for (inner, innerValue) in nested { values["\(key)[\(inner)]"] = try scalar(innerValue, "\(key)[\(inner)]") }
            } else {
                values[key] = try scalar(value, key)
            }
        }
        return try ProviderParameters(checked: values)
    }

    /// Bounded: at most 50 parameters, names of at most 60 characters, values of at most 500, no control characters.
    init(checked values: [String: String]) throws {
        guard values.count <= 50 else { throw ProviderError.invalid("Too many parameters") }
        for (name, value) in values {
            guard name.count <= 60, value.count <= 500 else { throw ProviderError.invalid("Parameter too long", param: String(name.prefix(60))) }
            guard !(name + value).unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw ProviderError.invalid("Invalid characters in \(name)", param: String(name.prefix(60)))
            }
        }
        self.values = values
    }

    /// Refuses any parameter outside `allowed` (names, or prefixes ending in `[`), as Stripe does.
    func allowOnly(_ allowed: [String]) throws {
        for name in values.keys.sorted() where !allowed.contains(where: { $0.hasSuffix("[") ? name.hasPrefix($0) : name == $0 }) {
            throw ProviderError.invalid("Received unknown parameter: \(name)", param: name, code: "parameter_unknown")
        }
    }

    func required(_ name: String) throws -> String {
        guard let value = values[name], !value.isEmpty else {
            throw ProviderError.invalid("Missing required param: \(name).", param: name, code: "parameter_missing")
        }
        return value
    }

    func integer(_ name: String, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let value = Int64(try required(name)), range.contains(value) else {
            throw ProviderError.invalid("Invalid integer: \(name) must be between \(range.lowerBound) and \(range.upperBound)", param: name)
        }
        return value
    }

    /// `metadata[key]` values, at most 20.
    func metadata() throws -> [String: String] {
        let entries = values.filter { $0.key.hasPrefix("metadata[") && $0.key.hasSuffix("]") }
        guard entries.count <= 20 else { throw ProviderError.invalid("Too many metadata keys", param: "metadata") }
        return Dictionary(uniqueKeysWithValues: entries.map { (String($0.key.dropFirst("metadata[".count).dropLast()), $0.value) })
    }

    /// What identifies the request for its idempotency key: an HMAC of every parameter under the provider's secret
    /// key — no card number is stored, and the digest cannot be searched for card numbers without the key.
    func fingerprint(key: String) -> String {
        let canonical = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let mac = HMAC<SHA256>.authenticationCode(for: Data(canonical.utf8), using: SymmetricKey(data: Data(key.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined()
    }
}
