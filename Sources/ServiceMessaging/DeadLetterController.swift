import Hummingbird
import ServiceCore
import ServiceHTTP

extension EventLog.DeadLetter: ResponseEncodable {}

/// Admin routes over the dead-letter queue: `GET /admin/dlq[?group=]`, `GET /admin/dlq/:id`,
/// `POST /admin/dlq/:id/replay`, `POST /admin/dlq/replay[?group=]`. Mount them behind authentication; every route
/// requires the admin role.
public struct DeadLetterController: Sendable {
    let log: EventLog

    public init(log: EventLog) {
        self.log = log
    }

    /// Answer of the replay routes.
    public struct Replayed: Codable, ResponseEncodable, Sendable {
        public var replayed: Int
    }

    /// Adds the routes under `admin/dlq` to `group` (which must set the caller's identity).
    public func addRoutes(to group: RouterGroup<ServiceRequestContext>) {
        group.get("admin/dlq", use: list)
        group.get("admin/dlq/:id", use: show)
        group.post("admin/dlq/replay", use: replayAll)
        group.post("admin/dlq/:id/replay", use: replayOne)
    }

    static func requireAdmin(_ context: ServiceRequestContext) throws {
        guard try context.requireIdentity().role == .admin else { throw APIError.forbidden("Admin role required") }
    }

    @Sendable func list(request: Request, context: ServiceRequestContext) async throws -> [EventLog.DeadLetter] {
        try Self.requireAdmin(context)
        return try await log.deadLetters(group: request.uri.queryParameters["group"].map(String.init))
    }

    @Sendable func show(request: Request, context: ServiceRequestContext) async throws -> EventLog.DeadLetter {
        try Self.requireAdmin(context)
        let id = try Self.id(context)
        guard let letter = try await log.deadLetter(id: id) else { throw APIError.notFound("Dead letter not found") }
        return letter
    }

    @Sendable func replayOne(request: Request, context: ServiceRequestContext) async throws -> Replayed {
        try Self.requireAdmin(context)
        let id = try Self.id(context)
        let count = try await log.replay(id: id)
        guard count > 0 else { throw APIError.notFound("Dead letter not found") }
        return Replayed(replayed: count)
    }

    /// The dead letter's id from the path: a positive integer (ids start at 1; a negative one once reached the log's
    /// "every dead letter" replay).
    static func id(_ context: ServiceRequestContext) throws -> Int64 {
        guard let id = Int64(try context.parameters.require("id")), id > 0 else {
            throw APIError.validation([.init(field: "id", message: "\"id\" must be a positive integer")])
        }
        return id
    }

    @Sendable func replayAll(request: Request, context: ServiceRequestContext) async throws -> Replayed {
        try Self.requireAdmin(context)
        return Replayed(replayed: try await log.replay(group: request.uri.queryParameters["group"].map(String.init)))
    }
}
