import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceHTTP
import ShopContracts

/// The internal route the auth service calls at login: checks an email and password and answers the user, or 401.
/// It lives under `/internal`, which the gateway never forwards, and answers only a service token with scope
/// `credentials:verify`.
struct CredentialsController<Repository: UserRepository> {
    let repository: Repository
    let hasher: PasswordHasher
    let verifier: TokenVerifier

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("internal/credentials")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .add(middleware: RequireServiceScope(Scope.credentialsVerify))
            .post("verify", use: verify)
    }

    @Sendable func verify(request: Request, context: ServiceRequestContext) async throws -> UserDTO {
        var request = request
        let check = try Validation.validate(try await request.jsonBody(context: context)) { body -> CredentialCheck? in
            body.allowOnly(["email", "password"])
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
