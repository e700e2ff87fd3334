import Foundation
import Logging
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceResilience

/// What an operator does with the sagas of one definition, with nothing but their database (so a command-line tool can
/// do it too): list them, read one's history, and retry one left `failed`. A retried saga is taken up by the recovery
/// loop of the service that runs the definition.
public struct SagaAdmin: Sendable {
    let database: Database
    let name: String
    let logger: Logger
    let clock: any WallClock

    public init(database: Database, name: String, logger: Logger, clock: any WallClock = SystemClock()) {
        self.database = database
        self.name = name
        self.logger = logger
        self.clock = clock
    }

    /// One saga as an operator sees it.
    public struct Summary: Codable, Sendable, Equatable {
        public var id: String
        public var status: SagaStatus
        public var error: String?
        public var updatedAt: String
    }

    /// One saga with its history.
    public struct Detail: Codable, Sendable, Equatable {
        public var id: String
        public var status: SagaStatus
        public var error: String?
        public var errorStatus: Int?
        public var history: [SagaRecord<EmptyState>.Entry]
    }

    /// Stands for a state the operator does not see.
    public struct EmptyState: Codable, Sendable, Equatable {}

    /// Sagas with `status` (all when nil), most recently changed first.
    public func list(status: SagaStatus?, limit: Int = 100) async throws -> [Summary] {
        try await database.withConnection { sql in
            try await sql.raw(
                """
                SELECT id, status, error, updated_at FROM sagas
                WHERE name = \(bind: self.name) AND (\(bind: status?.rawValue ?? "") = '' OR status = \(bind: status?.rawValue ?? ""))
                ORDER BY updated_at DESC LIMIT \(bind: limit)
                """
            ).all().map {
                Summary(
                    id: try $0.decode(column: "id", as: String.self), status: try $0.decode(column: "status", of: "sagas", as: SagaStatus.self),
                    error: try $0.decode(column: "error", as: String?.self), updatedAt: try $0.decode(column: "updated_at", as: String.self)
                )
            }
        }
    }

    /// One saga and its history; nil when there is none of this definition.
    public func detail(id: String) async throws -> Detail? {
        try await database.withConnection { sql in
            guard let row = try await sql.raw("SELECT * FROM sagas WHERE id = \(bind: id) AND name = \(bind: self.name)").first() else { return nil }
            let history = try await sql.raw("SELECT step, status, error, at FROM saga_steps WHERE saga_id = \(bind: id) ORDER BY seq").all().map {
                SagaRecord<EmptyState>.Entry(
                    name: try $0.decode(column: "step", as: String.self), status: try $0.decode(column: "status", as: String.self),
                    at: try $0.decode(column: "at", as: String.self), error: try $0.decode(column: "error", as: String?.self)
                )
            }
            return Detail(
                id: id, status: try row.decode(column: "status", of: "sagas", as: SagaStatus.self),
                error: try row.decode(column: "error", as: String?.self),
                errorStatus: try row.decode(column: "error_status", as: Int?.self), history: history
            )
        }
    }

    /// Puts a `failed` saga back to compensating from where its compensation gave up, with its limits counted afresh from
    /// now (its start time becomes now), for the recovery loop to take up; false when it is not `failed`.
    public func retry(id: String) async throws -> Bool {
        let now = Timestamp.now(on: clock)
        let retried = try await database.transaction { sql -> Bool in
            let rows = try await sql.raw(
                """
                UPDATE sagas SET status = 'compensating', owner = NULL, lease_until = 0, created_at = \(bind: now), updated_at = \(bind: now)
                WHERE id = \(bind: id) AND name = \(bind: self.name) AND status = 'failed' RETURNING id
                """
            ).all()
            guard !rows.isEmpty else { return false }
            let seq =
                try await sql.raw("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM saga_steps WHERE saga_id = \(bind: id)").first()?
                .decode(column: "next", as: Int.self) ?? 1
            try await sql.raw(
                "INSERT INTO saga_steps (saga_id, seq, step, status, error, at) VALUES (\(bind: id), \(bind: seq), 'operator', 'retried', NULL, \(bind: now))"
            ).run()
            return true
        }
        if retried { logger.notice("Saga retried by an operator", metadata: ["sagaId": "\(id)", "saga": "\(name)"]) }
        return retried
    }
}
