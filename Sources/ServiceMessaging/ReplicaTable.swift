import SQLKit

/// A table holding a service's local copy of data another service owns, kept up to date by that service's events (the
/// guide's data synchronisation). Events of one key can arrive late or twice, so a row is only replaced by a change that
/// is at least as new: each row carries its owner's `updated_at`, and the newest change wins whatever the order of
/// arrival.
public struct ReplicaTable: Sendable {
    /// The table's name.
    public let name: String
    /// Its key column (one row per owner's id).
    public let key: String
    /// The column holding the owner's time of the change (`Timestamp`'s fixed-width text, which sorts as time).
    public let updatedAt: String

    public init(_ name: String, key: String, updatedAt: String = "updated_at") {
        self.name = name
        self.key = key
        self.updatedAt = updatedAt
    }

    /// Stores `row` (every column, the key and the change's time among them) unless the table holds a newer change of
    /// the same key; in one statement, inside the caller's transaction `sql`.
    public func upsert(_ row: KeyValuePairs<String, any Encodable & Sendable>, in sql: any SQLDatabase) async throws {
        let columns = row.map(\.key)
        precondition(columns.contains(key) && columns.contains(updatedAt), "a replica row needs its key and its change time")
        try await sql.insert(into: name).columns(columns).values(row.map { SQLBind($0.value) })
            .onConflict(with: [key]) { update in
                for column in columns where column != key { update.set(excludedValueOf: column) }
                return update.where(SQLColumn(updatedAt, table: name), .lessThanOrEqual, SQLExcludedColumn(updatedAt))
            }
            .run()
    }
}
