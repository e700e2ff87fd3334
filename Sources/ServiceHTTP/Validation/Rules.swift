import ServiceCore

/// Reusable string rules for ``Validation/ObjectReader/string(_:required:minLength:maxLength:rule:)``; each returns an error message or nil.
public enum Rules {
    /// An email address: one `@`, a non-empty local part, a dotted domain of letters, digits and hyphens, a TLD of 2+ letters.
    public static func email(_ value: String) -> String? {
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].count <= 64, value.count <= 254 else { return "must be a valid email" }
        let localAllowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-")
        guard parts[0].allSatisfy(localAllowed.contains), !parts[0].hasPrefix("."), !parts[0].hasSuffix("."), !parts[0].contains("..") else {
            return "must be a valid email"
        }
        let labels = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return "must be a valid email" }
        for label in labels {
            guard !label.isEmpty, label.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-"),
                label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
            else { return "must be a valid email" }
        }
        guard let tld = labels.last, tld.count >= 2, tld.allSatisfy({ $0.isASCII && $0.isLetter }) else { return "must be a valid email" }
        return nil
    }

    /// The guide's password pattern: a lower case letter, an upper case letter and a digit (length is checked separately).
    public static func strongPassword(_ value: String) -> String? {
        let hasLower = value.contains { $0.isASCII && $0.isLowercase }
        let hasUpper = value.contains { $0.isASCII && $0.isUppercase }
        let hasDigit = value.contains { $0.isASCII && $0.isNumber }
        return hasLower && hasUpper && hasDigit ? nil : "must contain a lower case letter, an upper case letter and a digit"
    }

    /// The guide's phone pattern `^\+?[\d\s-()]+$`.
    public static func phone(_ value: String) -> String? {
        var body = Substring(value)
        if body.hasPrefix("+") { body = body.dropFirst() }
        let allowed = Set("0123456789 -()\t")
        return !body.isEmpty && body.allSatisfy(allowed.contains) ? nil : "must be a valid phone number"
    }

    /// An identifier of 1–64 of `A-Z a-z 0-9 - _ .` (product ids and the like).
    public static func identifier(_ value: String) -> String? {
        guard value.count <= 64 else { return "must be at most 64 characters" }
        let ok = value.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
        return ok ? nil : "may contain only letters, digits, '-', '_' and '.'"
    }
}
