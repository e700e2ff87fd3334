import Foundation

/// A charge as the API shows it (Stripe's field names).
struct Charge: Codable, Sendable, Equatable {
    struct Card: Codable, Sendable, Equatable {
        var brand: String
        var last4: String
        var expMonth: Int
        var expYear: Int

        enum CodingKeys: String, CodingKey {
            case brand, last4
            case expMonth = "exp_month"
            case expYear = "exp_year"
        }
    }

    struct Details: Codable, Sendable, Equatable {
        var card: Card
    }

    var id: String
    var object = "charge"
    /// In the currency's smallest unit (cents).
    var amount: Int64
    var amountRefunded: Int64
    var currency: String
    /// `succeeded` or `failed`.
    var status: String
    var paid: Bool
    var refunded: Bool
    var failureCode: String?
    var failureMessage: String?
    var metadata: [String: String]
    /// Unix time in seconds.
    var created: Int64
    var paymentMethodDetails: Details

    enum CodingKeys: String, CodingKey {
        case id, object, amount, currency, status, paid, refunded, metadata, created
        case amountRefunded = "amount_refunded"
        case failureCode = "failure_code"
        case failureMessage = "failure_message"
        case paymentMethodDetails = "payment_method_details"
    }
}

/// A refund as the API shows it.
struct Refund: Codable, Sendable, Equatable {
    var id: String
    var object = "refund"
    var amount: Int64
    var charge: String
    var currency: String
    var status = "succeeded"
    var created: Int64
}

/// One page of charges, newest first.
struct ChargeList: Codable, Sendable {
    var object = "list"
    var data: [Charge]
    var hasMore: Bool
    var url = "/v1/charges"

    enum CodingKeys: String, CodingKey {
        case object, data, url
        case hasMore = "has_more"
    }
}

/// Identifiers in the provider's style: a prefix and 24 random hexadecimal digits.
enum ProviderID {
    static func make(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(24)
    }

    /// Whether `text` looks like an id with `prefix` (and so is safe to look up and to echo).
    static func isValid(_ text: String, prefix: String) -> Bool {
        text.hasPrefix(prefix + "_") && text.count <= 64 && text.dropFirst(prefix.count + 1).allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }
}
