import ShopContracts

/// The payment service's card: the shared contract type (validation, brand, redacted descriptions).
public typealias Card = CardDetails

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
