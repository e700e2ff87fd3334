import Hummingbird
import ServiceCore
import ServiceHTTP
import ServiceSaga

extension SagaAdmin.Summary: ResponseEncodable {}
extension SagaAdmin.Detail: ResponseEncodable {}

/// Admin routes over the checkout sagas: `GET /admin/sagas[?status=failed]`, `GET /admin/sagas/:id`,
/// `POST /admin/sagas/:id/retry` (a `failed` saga compensates again). Every route requires the admin role.
struct SagaAdminController {
    let admin: SagaAdmin

    /// Answer of the retry route.
    struct Retried: Codable, ResponseEncodable {
        var id: String
        var status: String
    }

    func addRoutes(to group: RouterGroup<ServiceRequestContext>) {
        group.get("admin/sagas", use: list)
        group.get("admin/sagas/:id", use: show)
        group.post("admin/sagas/:id/retry", use: retry)
    }

    static func requireAdmin(_ context: ServiceRequestContext) throws {
        guard try context.requireIdentity().role == .admin else { throw APIError.forbidden("Admin role required") }
    }

    static func id(_ context: ServiceRequestContext) throws -> String {
        let id = try context.parameters.require("id")
        guard id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw APIError.validation([.init(field: "id", message: "\"id\" is not a saga id")])
        }
        return id
    }

    @Sendable func list(request: Request, context: ServiceRequestContext) async throws -> [SagaAdmin.Summary] {
        try Self.requireAdmin(context)
        var status: SagaStatus?
        if let text = request.uri.queryParameters.get("status") {
            guard let known = SagaStatus(rawValue: text) else {
                throw APIError.validation([
                    .init(field: "status", message: "\"status\" must be running, compensating, completed, compensated or failed")
                ])
            }
            status = known
        }
        return try await admin.list(status: status)
    }

    @Sendable func show(request: Request, context: ServiceRequestContext) async throws -> SagaAdmin.Detail {
        try Self.requireAdmin(context)
        guard let detail = try await admin.detail(id: try Self.id(context)) else { throw APIError.notFound("Saga not found") }
        return detail
    }

    @Sendable func retry(request: Request, context: ServiceRequestContext) async throws -> Retried {
        try Self.requireAdmin(context)
        let id = try Self.id(context)
        guard try await admin.retry(id: id) else {
            guard let detail = try await admin.detail(id: id) else { throw APIError.notFound("Saga not found") }
            throw APIError(.conflict, "Only a failed saga can be retried; this one is \(detail.status.rawValue)")
        }
        return Retried(id: id, status: SagaStatus.compensating.rawValue)
    }
}
