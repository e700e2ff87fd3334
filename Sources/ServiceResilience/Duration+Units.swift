extension Duration {
    /// The duration in whole nanoseconds (truncated), as timers and NIO take it.
    public var wholeNanoseconds: Int64 { components.seconds &* 1_000_000_000 &+ components.attoseconds / 1_000_000_000 }

    /// The duration in whole milliseconds (truncated).
    public var wholeMilliseconds: Int64 { components.seconds &* 1000 &+ components.attoseconds / 1_000_000_000_000_000 }

    /// The duration in whole seconds, rounded up (what `Retry-After` and `RateLimit-Reset` carry).
    public var wholeSecondsRoundedUp: Int64 { components.seconds + (components.attoseconds > 0 ? 1 : 0) }

    /// The duration in seconds, as a `Double` (what `Date` arithmetic and rates take).
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// A duration written as a whole number and a unit: `250ms`, `30s`, `5m`, `12h`, `7d` (surrounding spaces ignored).
    /// Answers nil for anything else, for zero or negative amounts, and for more than ten years.
    public static func parse(_ text: String) -> Duration? {
        var trimmed = Substring(text)
        while trimmed.first?.isWhitespace == true { trimmed.removeFirst() }
        while trimmed.last?.isWhitespace == true { trimmed.removeLast() }
        let text = trimmed.lowercased()
        let units: [(suffix: String, milliseconds: Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for unit in units where text.hasSuffix(unit.suffix) {
            let digits = text.dropLast(unit.suffix.count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let amount = Int64(digits), amount > 0 else {
                return nil
            }
            let (total, overflow) = amount.multipliedReportingOverflow(by: unit.milliseconds)
            guard !overflow, total <= 10 * 366 * 86_400_000 else { return nil }
            return .milliseconds(total)
        }
        return nil
    }
}
