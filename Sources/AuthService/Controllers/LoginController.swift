import Foundation
import Hummingbird
import JWTKit
import ServiceAuth
import ServiceCore
import ShopContracts

/// `POST /auth/login`: checks credentials with the user service and answers a signed token;
/// `GET /.well-known/jwks.json`: the public keys everyone verifies tokens with.
struct LoginController {
    let users: ServiceClient
    let issuer: TokenIssuer
    let throttle: LoginThrottle

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.post("auth/login", use: login)
        router.get(".well-known/jwks.json", use: jwks)
        router.get("auth/.well-known/jwks.json", use: jwks)
    }

    @Sendable func login(request: Request, context: ServiceRequestContext) async throws -> TokenResponse {
        var request = request
        let credentials = try Validation.validate(try await request.jsonBody(context: context)) { body -> CredentialCheck? in
            body.allowOnly(["email", "password"])
            let email = body.string("email", maxLength: 254)
            let password = body.string("password", maxLength: 1024, trim: false)
            guard let email, let password else { return nil }
            return CredentialCheck(email: email, password: password)
        }
        let address = Self.clientAddress(request, context: context)
        if let wait = throttle.retryAfter(email: credentials.email, address: address) {
            let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
            context.logger.warning("Login throttled", metadata: ["address": "\(address)"])
            throw APIError(
                .tooManyRequests, "Too many failed login attempts", headers: [.retryAfter: String(seconds)], extra: ["retryAfter": String(seconds)]
            )
        }
        let response = try await users.send(.POST, "/internal/credentials/verify", body: credentials)
        switch response.status {
        case 200:
            let user = try response.decode(UserDTO.self)
            let role = Identity.Role(rawValue: user.role) ?? .user
            let (token, expiresIn) = try await issuer.issue(subject: user.id, role: role, email: user.email)
            context.logger.info("Login succeeded", metadata: ["userId": "\(user.id)"])
            return TokenResponse(token: token, expiresIn: expiresIn)
        case 400, 401:
            throttle.failed(email: credentials.email, address: address)
            context.logger.info("Login refused")
            throw APIError(.unauthorized, "Invalid credentials")
        default:
            throw APIError(.badGateway, "User service answered \(response.status)")
        }
    }

    /// The client's address: the last hop the gateway added to `X-Forwarded-For`, else the connection's peer.
    static func clientAddress(_ request: Request, context: ServiceRequestContext) -> String {
        if let forwarded = request.headers[.init("x-forwarded-for")!]?.split(separator: ",").last {
            return forwarded.trimmingCharacters(in: .whitespaces)
        }
        return context.remoteAddress?.ipAddress ?? "unknown"
    }

    @Sendable func jwks(request: Request, context: ServiceRequestContext) async throws -> Response {
        let data = try JSONEncoder().encode(issuer.jwks)
        return Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
