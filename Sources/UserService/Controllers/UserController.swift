import Foundation
import Hummingbird
import ServiceAuth
import ServiceCache
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ShopContracts

/// Public and authenticated user routes: signup, profile read/update, and the user-with-orders composition.
struct UserController<Repository: UserRepository> {
    let repository: Repository
    let hasher: PasswordHasher
    let orders: ServiceClient
    let verifier: TokenVerifier
    /// Users as the API shows them (never their password hashes), by id, in each process only (personal data stays out
    /// of Redis); forgotten in every instance when a user changes here.
    let users: Cache<UserDTO>

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.post("users", use: create)
        router.group("users")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireUser())
            .get(":id", use: get)
            .patch(":id", use: update)
            .get(":id/orders", use: userOrders)
    }

    @Sendable func create(request: Request, context: ServiceRequestContext) async throws -> EditedResponse<UserDTO> {
        var request = request
        let input = try NewUser(body: try await request.jsonBody(context: context))
        let now = Timestamp.now()
        let user = User(
            id: UUID().uuidString.lowercased(),
            email: input.email,
            name: input.name,
            passwordHash: try await hasher.hash(input.password),
            role: .user,
            profile: input.profile,
            createdAt: now,
            updatedAt: now
        )
        do {
            try await repository.create(user)
        } catch UserRepositoryError.duplicateEmail {
            throw APIError(.conflict, "Email already registered")
        }
        context.logger.info("User created", metadata: ["userId": "\(user.id)"])
        return EditedResponse(status: .created, headers: [.location: "/users/\(user.id)"], response: user.dto)
    }

    @Sendable func get(request: Request, context: ServiceRequestContext) async throws -> UserDTO {
        let id = try accessibleID(context: context)
        guard let user = try await users.get("user:\(id)", load: { try await repository.find(id: id)?.dto }) else {
            throw APIError.notFound("User not found")
        }
        return user
    }

    @Sendable func update(request: Request, context: ServiceRequestContext) async throws -> UserDTO {
        let id = try accessibleID(context: context)
        var request = request
        let changes = try UserChanges(body: try await request.jsonBody(context: context))
        var hash: String?
        if let password = changes.password { hash = try await hasher.hash(password) }
        guard
            let user = try await repository.update(
                id: id, name: changes.name, passwordHash: hash, profile: changes.profile, updatedAt: Timestamp.now())
        else { throw APIError.notFound("User not found") }
        await users.invalidate(keys: ["user:\(id)"])
        return user.dto
    }

    @Sendable func userOrders(request: Request, context: ServiceRequestContext) async throws -> UserWithOrders {
        let user = try await authorizedUser(context: context)
        let identity = try context.requireIdentity()
        let response = try await orders.get("/orders/user/\(user.id)", bearer: identity.token)
        guard response.isSuccess else {
            context.logger.warning("Order service refused the orders of a user", metadata: ["status": "\(response.status)"])
            throw APIError(.badGateway, "Order service answered \(response.status)")
        }
        return UserWithOrders(user: user.dto, orders: try response.decode([OrderDTO].self))
    }

    /// The `:id` of the request, when the caller is that user or an admin (403 otherwise).
    private func accessibleID(context: ServiceRequestContext) throws -> String {
        let id = try context.parameters.require("id")
        guard try context.requireIdentity().canAccess(ownerID: id) else { throw APIError.forbidden() }
        return id
    }

    /// The user named by `:id`, when the caller is that user or an admin (403 otherwise, 404 when unknown).
    private func authorizedUser(context: ServiceRequestContext) async throws -> User {
        let id = try accessibleID(context: context)
        guard let user = try await repository.find(id: id) else { throw APIError.notFound("User not found") }
        return user
    }
}
