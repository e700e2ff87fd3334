import Foundation
import ServiceCore
import ServiceHTTP

/// A payment card as a request gives it. Lives only for the request (and, during a checkout, in the orchestrator's
/// memory): nothing but ``brand`` and ``last4`` is ever stored or logged, and its descriptions never show the number or
/// the CVV.
public struct CardDetails: Codable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public let number: String
    public let expiryMonth: Int
    public let expiryYear: Int
    public let cvv: String

    public init(number: String, expiryMonth: Int, expiryYear: Int, cvv: String) {
        self.number = number
        self.expiryMonth = expiryMonth
        self.expiryYear = expiryYear
        self.cvv = cvv
    }

    public var last4: String { String(number.suffix(4)) }

    /// The card network, from the number's prefix (IIN ranges).
    public var brand: String {
        let two = Int(number.prefix(2)) ?? 0
        let four = Int(number.prefix(4)) ?? 0
        if number.hasPrefix("4") { return "visa" }
        if (51...55).contains(two) || (2221...2720).contains(four) { return "mastercard" }
        if two == 34 || two == 37 { return "amex" }
        if four == 6011 || two == 65 { return "discover" }
        return "card"
    }

    public var description: String { "\(brand) •••• \(last4)" }
    public var debugDescription: String { description }

    /// Whether `digits` (only digits) passes the Luhn check.
    public static func passesLuhn(_ digits: String) -> Bool {
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        var sum = 0
        for (index, character) in digits.reversed().enumerated() {
            var digit = Int(character.asciiValue! - 48)
            if index % 2 == 1 {
                digit *= 2
                if digit > 9 { digit -= 9 }
            }
            sum += digit
        }
        return sum % 10 == 0
    }

    /// Whether the card is still valid on `date` (it expires after the last day of its expiry month, in UTC).
    public func isExpired(on date: Date) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let now = calendar.dateComponents([.year, .month], from: date)
        guard let year = now.year, let month = now.month else { return true }
        return expiryYear < year || (expiryYear == year && expiryMonth < month)
    }
}

extension CardDetails {
    /// Reads `paymentMethod` and `cardDetails` of a payment or checkout body, reporting every bad field: the number must
    /// be 12–19 digits (spaces and dashes between groups allowed) passing Luhn, the card must not be expired on `now`,
    /// the CVV 3 or 4 digits. Error messages never repeat the values.
    public static func read(from body: Validation.ObjectReader, now: Date) -> CardDetails? {
        _ = body.string("paymentMethod", maxLength: 32) { method in
            ["credit_card", "debit_card", "card"].contains(method) ? nil : "must be one of credit_card, debit_card, card"
        }
        let card = body.object("cardDetails").map { card -> CardDetails? in
            card.allowOnly(["number", "expiryMonth", "expiryYear", "cvv", "holderName"])
            _ = card.string("holderName", required: false, maxLength: 100)
            let number = card.string("number", maxLength: 23) { raw in
                let digits = raw.filter { $0 != " " && $0 != "-" }
                guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), (12...19).contains(digits.count) else { return "must be 12 to 19 digits" }
                return passesLuhn(digits) ? nil : "is not a valid card number"
            }
            let month = card.integer("expiryMonth", in: 1...12)
            let year = card.integer("expiryYear", in: 2000...2100)
            let cvv = card.string("cvv", maxLength: 4) { cvv in
                cvv.count >= 3 && cvv.allSatisfy({ $0.isASCII && $0.isNumber }) ? nil : "must be 3 or 4 digits"
            }
            guard let number, let month, let year, let cvv else { return nil }
            let parsed = CardDetails(number: number.filter { $0 != " " && $0 != "-" }, expiryMonth: month, expiryYear: year, cvv: cvv)
            if parsed.isExpired(on: now) {
                card.fail("expiryYear", "the card has expired")
                return nil
            }
            return parsed
        }
        return card ?? nil
    }
}
