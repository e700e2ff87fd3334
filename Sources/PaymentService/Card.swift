import Foundation

/// A payment card as given in a request. Lives only for the request: nothing but ``brand`` and ``last4`` is ever stored
/// or logged, and its description never shows the number or the CVV.
public struct Card: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
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
    static func passesLuhn(_ digits: String) -> Bool {
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit) else { return false }
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
    func isExpired(on date: Date) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let now = calendar.dateComponents([.year, .month], from: date)
        guard let year = now.year, let month = now.month else { return true }
        return expiryYear < year || (expiryYear == year && expiryMonth < month)
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
