import Foundation
import Logging
import SQLKit
import ServiceDatabase
import ShopContracts

/// The tables of a running system that grow with traffic but are not business data (what retention prunes), and the
/// size of each SQLite file: what `shop bench soak` prints and the retention tests watch.
public enum InfrastructureTables {
    /// The databases to look into (the event log's, then the services') and their infrastructure tables.
    public static let tables: [(database: String, tables: [String])] = [
        ("eventlog", ["events", "deliveries"]),
        (ServiceName.user.rawValue, ["outbox", "inbox"]),
        (ServiceName.inventory.rawValue, ["outbox", "inbox"]),
        (ServiceName.order.rawValue, ["outbox", "inbox", "sagas", "saga_steps", "checkouts"]),
        (ServiceName.payment.rawValue, ["outbox", "inbox"]),
        (ServiceName.notification.rawValue, ["outbox", "inbox"]),
    ]

    /// Rows of every infrastructure table of `system`, keyed `database.table` (e.g. `order.sagas`).
    public static func rows(of system: LocalSystem, logger: Logger) async throws -> [String: Int] {
        var rows: [String: Int] = [:]
        for (name, tables) in tables {
            let configuration = try DatabaseConfiguration(url: system.databaseURL, service: name, dataDirectory: system.dataDirectory)
            let counts = try await Database.with(configuration, logger: logger) { database in
                try await database.withConnection { sql in
                    var counts: [String: Int] = [:]
                    for table in tables {
                        counts[table] = try await sql.raw("SELECT COUNT(*) AS n FROM \(ident: table)").first()?.decode(column: "n", as: Int.self) ?? 0
                    }
                    return counts
                }
            }
            for (table, count) in counts { rows["\(name).\(table)"] = count }
        }
        return rows
    }

    /// Bytes on disk of each SQLite file of `system` and of its write-ahead log, keyed by database name; empty on
    /// PostgreSQL.
    public static func fileSizes(of system: LocalSystem) -> [String: (database: Int, log: Int)] {
        guard system.databaseURL.isEmpty else { return [:] }
        var sizes: [String: (database: Int, log: Int)] = [:]
        for (name, _) in tables {
            let path = (system.dataDirectory as NSString).appendingPathComponent("\(name).sqlite")
            let size = { (path: String) in (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
            sizes[name] = (size(path), size(path + "-wal"))
        }
        return sizes
    }
}
