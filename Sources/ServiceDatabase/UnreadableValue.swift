import Metrics
import SQLKit

/// A stored value the code cannot read back (an unknown status, a corrupt document): an error, never replaced by a
/// default. Making one counts it in `db_unreadable_values_total{table, column}`; whoever handles the error logs it.
public struct UnreadableValue: Error, CustomStringConvertible {
    public var table: String
    public var column: String
    /// The start of the value, for the log (at most 40 characters).
    public var value: String

    public init(table: String, column: String, value: String) {
        self.table = table
        self.column = column
        self.value = String(value.prefix(40))
        Counter(label: "db_unreadable_values_total", dimensions: [("table", table), ("column", column)]).increment()
    }

    public var description: String { "unreadable value in \(table).\(column): '\(value)'" }
}

extension SQLRow {
    /// The text in `column` as a `T` (a status enum, say); a value `T` does not know is an ``UnreadableValue``.
    public func decode<T: RawRepresentable>(column: String, of table: String, as type: T.Type = T.self) throws -> T where T.RawValue == String {
        let text = try decode(column: column, as: String.self)
        guard let value = T(rawValue: text) else { throw UnreadableValue(table: table, column: column, value: text) }
        return value
    }
}
