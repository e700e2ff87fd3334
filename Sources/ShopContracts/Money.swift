/// Money is kept as integer cents so totals never drift; JSON carries decimal amounts with two places.
public enum Money {
    /// `29.99` → `2999`.
    public static func cents(_ amount: Double) -> Int64 { Int64((amount * 100).rounded()) }
    /// `2999` → `29.99`.
    public static func amount(_ cents: Int64) -> Double { Double(cents) / 100 }
}
