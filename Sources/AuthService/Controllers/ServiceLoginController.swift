import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceHTTP
import ShopContracts

/// `POST /auth/service` (the guide's service authentication): a service proves itself with its client id and secret
/// and gets a short-lived token carrying the scopes granted to it.
struct ServiceLoginController {
    /// Client id → secret (read at each login: the local secrets file may be created after this service started).
    let clients: @Sendable () throws -> [String: String]
    let ring: KeyRing

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.post("auth/service", use: login)
    }

    @Sendable func login(request: Request, context: ServiceRequestContext) async throws -> ServiceToken {
        var request = request
        let login = try Validation.validate(try await request.jsonBody(context: context)) { body -> ServiceLogin? in
            body.allowOnly(["serviceId", "serviceSecret"])
            let id = body.string("serviceId", maxLength: 64)
            let secret = body.string("serviceSecret", maxLength: 256, trim: false)
            guard let id, let secret else { return nil }
            return ServiceLogin(serviceId: id, serviceSecret: secret)
        }
        // Unknown id and wrong secret look the same, and the comparison takes the same time either way.
        let expected = try clients()[login.serviceId] ?? ServiceSecrets.randomSecret()
        guard ServiceSecrets.constantTimeEquals(expected, login.serviceSecret), let service = ServiceName(rawValue: login.serviceId) else {
            context.logger.warning("Service login refused", metadata: ["serviceId": "\(login.serviceId.prefix(64))"])
            throw APIError(.unauthorized, "Invalid service credentials")
        }
        let (token, expiresIn) = try await ring.issuer.issue(
            subject: service.rawValue, role: .service, email: nil, scopes: Scope.granted(to: service))
        context.logger.info("Service token issued", metadata: ["serviceId": "\(service.rawValue)"])
        return ServiceToken(token: token, expiresIn: expiresIn)
    }
}

extension ServiceToken: ResponseEncodable {}
