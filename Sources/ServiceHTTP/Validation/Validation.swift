import ServiceCore

/// Field-by-field validation of a JSON body in the spirit of the guide's Joi schemas, collecting every
/// problem instead of stopping at the first, so a client learns all it got wrong in one 400.
///
/// Written by hand: Swift's `Decodable` stops at the first error and cannot express rules such as
/// "at least 8 characters with a digit"; no maintained Swift validation library is in the package mirror.
public enum Validation {
    /// Validates `body` as an object with `read`, which returns the typed value; throws 400 `Validation failed` with
    /// every field error found (including unknown keys, as Joi rejects them by default).
    public static func validate<T>(_ body: JSONValue, _ read: (ObjectReader) throws -> T?) throws -> T {
        let sink = ErrorSink()
        guard case .object(let fields) = body else {
            throw APIError.validation([.init(field: "", message: "Body must be a JSON object")])
        }
        let reader = ObjectReader(fields: fields, prefix: "", sink: sink)
        let value = try read(reader)
        if let value, sink.errors.isEmpty { return value }
        throw APIError.validation(sink.errors.isEmpty ? [.init(field: "", message: "Invalid body")] : sink.errors)
    }

    final class ErrorSink {
        var errors: [APIError.FieldError] = []
    }

    /// Reads and checks the fields of one JSON object; errors are recorded with their dotted path.
    public struct ObjectReader {
        let fields: [String: JSONValue]
        let prefix: String
        let sink: ErrorSink

        /// True when no error has been recorded so far (anywhere in the body).
        public var isValid: Bool { sink.errors.isEmpty }

        func path(_ key: String) -> String { prefix.isEmpty ? key : "\(prefix).\(key)" }

        /// Records an error for `key`.
        public func fail(_ key: String, _ message: String) {
            let field = path(key)
            sink.errors.append(.init(field: field, message: "\"\(field)\" \(message)"))
        }

        func value(_ key: String, required: Bool) -> JSONValue? {
            guard let value = fields[key] else {
                if required { fail(key, "is required") }
                return nil
            }
            return value
        }

        /// Rejects keys other than `allowed`.
        public func allowOnly(_ allowed: Set<String>) {
            for key in fields.keys.sorted() where !allowed.contains(key) {
                fail(key, "is not allowed")
            }
        }

        /// A string with optional length bounds (in characters, and in UTF-8 bytes) and a custom rule returning an error
        /// message. Surrounding white space is trimmed unless `trim` is false; control characters (NUL among them, which
        /// PostgreSQL refuses and C libraries truncate at) are refused.
        public func string(
            _ key: String,
            required: Bool = true,
            minLength: Int? = nil,
            maxLength: Int? = nil,
            maxBytes: Int? = nil,
            trim: Bool = true,
            rule: ((String) -> String?)? = nil
        ) -> String? {
            guard let value = value(key, required: required) else { return nil }
            guard case .string(let raw) = value else {
                fail(key, "must be a string")
                return nil
            }
            if raw.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                fail(key, "must not contain control characters")
                return nil
            }
            let string = trim ? raw.trimmingCharacters(in: .whitespacesAndNewlines) : raw
            if string.isEmpty {
                fail(key, "is not allowed to be empty")
                return nil
            }
            // Lengths count Unicode code points, as JSON Schema's minLength/maxLength do (the OpenAPI documents state
            // these rules that way), not grapheme clusters as String.count would.
            let length = string.unicodeScalars.count
            if let minLength, length < minLength {
                fail(key, "length must be at least \(minLength) characters long")
                return nil
            }
            if let maxLength, length > maxLength {
                fail(key, "length must be less than or equal to \(maxLength) characters long")
                return nil
            }
            if let maxBytes, string.utf8.count > maxBytes {
                fail(key, "must be at most \(maxBytes) bytes long")
                return nil
            }
            if let rule, let message = rule(string) {
                fail(key, message)
                return nil
            }
            return string
        }

        /// A number, optionally strictly positive, with at most `maxFractionDigits` decimals and an upper bound.
        public func number(
            _ key: String,
            required: Bool = true,
            positive: Bool = false,
            maximum: Double? = nil,
            maxFractionDigits: Int? = nil
        ) -> Double? {
            guard let value = value(key, required: required) else { return nil }
            guard case .number(let number) = value, number.isFinite else {
                fail(key, "must be a number")
                return nil
            }
            if positive, number <= 0 {
                fail(key, "must be a positive number")
                return nil
            }
            if let maximum, number > maximum {
                fail(key, "must be less than or equal to \(maximum)")
                return nil
            }
            if let maxFractionDigits {
                let scale = pow10(maxFractionDigits)
                if abs((number * scale).rounded() - number * scale) > 1e-6 {
                    fail(key, "must have no more than \(maxFractionDigits) decimal places")
                    return nil
                }
                if positive, (number * scale).rounded() < 1 {
                    fail(key, "must be at least \(1 / scale)")
                    return nil
                }
            }
            return number
        }

        /// An integer within `range`.
        public func integer(_ key: String, required: Bool = true, in range: ClosedRange<Int>) -> Int? {
            guard let value = value(key, required: required) else { return nil }
            guard case .number(let number) = value, number.isFinite, number.rounded() == number else {
                fail(key, "must be an integer")
                return nil
            }
            guard number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
                fail(
                    key,
                    number < Double(range.lowerBound)
                        ? "must be greater than or equal to \(range.lowerBound)" : "must be less than or equal to \(range.upperBound)")
                return nil
            }
            return Int(number)
        }

        /// A nested object, read with its own reader.
        public func object(_ key: String, required: Bool = true) -> ObjectReader? {
            guard let value = value(key, required: required) else { return nil }
            guard case .object(let fields) = value else {
                fail(key, "must be an object")
                return nil
            }
            return ObjectReader(fields: fields, prefix: path(key), sink: sink)
        }

        /// An array of objects with a size range; each element gets its own reader (path `key.N`).
        public func objects(_ key: String, required: Bool = true, count: ClosedRange<Int>) -> [ObjectReader]? {
            guard let value = value(key, required: required) else { return nil }
            guard case .array(let elements) = value else {
                fail(key, "must be an array")
                return nil
            }
            guard count.contains(elements.count) else {
                fail(
                    key,
                    elements.count < count.lowerBound
                        ? "must contain at least \(count.lowerBound) items" : "must contain less than or equal to \(count.upperBound) items")
                return nil
            }
            var readers: [ObjectReader] = []
            for (index, element) in elements.enumerated() {
                guard case .object(let fields) = element else {
                    fail("\(key).\(index)", "must be an object")
                    continue
                }
                readers.append(ObjectReader(fields: fields, prefix: path("\(key).\(index)"), sink: sink))
            }
            return readers
        }

        private func pow10(_ exponent: Int) -> Double {
            (0..<exponent).reduce(1.0) { value, _ in value * 10 }
        }
    }
}
