import Hummingbird
import ServiceCore
import ShopContracts

/// The internal route the auth service calls at login: checks an email and password and answers the user, or 401.
/// It lives under `/internal`, which the gateway never forwards.
struct CredentialsController<Repository: UserRepository> {
    let repository: Repository
    let hasher: PasswordHasher

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.post("internal/credentials/verify", use: verify)
    }

    @Sendable func verify(request: Request, context: ServiceRequestContext) async throws -> UserDTO {
        var request = request
        let check = try Validation.validate(try await request.jsonBody(context: context)) { body -> CredentialCheck? in
            let email = body.string("email", maxLength: 254)
            let password = body.string("password", maxLength: 1024, trim: false)
            guard let email, let password else { return nil }
            return CredentialCheck(email: email, password: password)
        }
        let user = try await repository.find(email: check.email)
        let matches = try await hasher.verify(check.password, hash: user?.passwordHash ?? hasher.decoyHash)
        guard let user, matches else { throw APIError(.unauthorized, "Invalid credentials") }
        return user.dto
    }
}
