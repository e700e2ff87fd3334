import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceHTTP
import ShopContracts

/// `GET /notifications` (the caller's, paginated) and `GET /notifications/recipients/:userId` (the replica entry).
struct NotificationController {
    let repository: NotificationRepository
    let verifier: TokenVerifier

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("notifications")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireUser())
            .get(use: list)
            .get("recipients/:userId", use: recipient)
    }

    @Sendable func list(request: Request, context: ServiceRequestContext) async throws -> Paginated<NotificationDTO> {
        let identity = try context.requireIdentity()
        let page = try PageRequest(request: request)
        let (notifications, total) = try await repository.list(userId: identity.subject, page: page)
        return Paginated(results: notifications, request: page, total: total)
    }

    @Sendable func recipient(request: Request, context: ServiceRequestContext) async throws -> Contact {
        let id = try context.parameters.require("userId")
        guard try context.requireIdentity().canAccess(ownerID: id) else { throw APIError.forbidden() }
        guard let contact = try await repository.recipient(id: id) else { throw APIError.notFound("Recipient not known") }
        return contact
    }
}
extension NotificationDTO: ResponseEncodable {}
