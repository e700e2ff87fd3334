import Foundation
import Hummingbird
import JWTKit
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceResilience
import ShopContracts

/// `POST /auth/login`: checks credentials with the user service and answers a signed token;
/// `GET /.well-known/jwks.json`: the public keys everyone verifies tokens with.
struct LoginController {
    let users: ServiceClient
    let ring: KeyRing
    let throttle: LoginThrottle
    /// Peers whose `X-Forwarded-For` is believed (the gateway): loopback, and `TRUSTED_PROXIES`.
    let trustedProxies: TrustedProxies

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
        let address = Self.clientAddress(request, context: context, trusting: trustedProxies)
        if let wait = throttle.begin(email: credentials.email, address: address) {
            let seconds = max(1, Int(wait.wholeSecondsRoundedUp))
            context.logger.warning("Login throttled", metadata: ["address": "\(address)"])
            throw APIError(
                .tooManyRequests, "Too many failed login attempts", headers: [.retryAfter: String(seconds)], extra: ["retryAfter": .integer(seconds)]
            )
        }
        let response: ServiceClient.Response
        do {
            response = try await users.send(.POST, "/internal/credentials/verify", body: credentials)
        } catch {
            throttle.succeeded(email: credentials.email, address: address)  // not checked: no guess was made
            throw error
        }
        switch response.status {
        case 200:
            throttle.succeeded(email: credentials.email, address: address)
            let user = try response.decode(UserDTO.self)
            let role = Identity.Role(rawValue: user.role) ?? .user
            let (token, expiresIn) = try await ring.issuer.issue(subject: user.id, role: role, email: user.email)
            context.logger.info("Login succeeded", metadata: ["userId": "\(user.id)"])
            return TokenResponse(token: token, expiresIn: expiresIn)
        case 400, 401:
            context.logger.info("Login refused")
            throw APIError(.unauthorized, "Invalid credentials")
        default:
            throttle.succeeded(email: credentials.email, address: address)
            throw APIError(.badGateway, "User service answered \(response.status)")
        }
    }

    /// The client's address: when the peer is a trusted proxy (the gateway, on loopback or in `TRUSTED_PROXIES`), the
    /// right-most hop of `X-Forwarded-For` that is not itself a trusted proxy; otherwise the peer itself, whatever the
    /// header claims.
    static func clientAddress(_ request: Request, context: ServiceRequestContext, trusting proxies: TrustedProxies) -> String {
        clientAddress(
            peer: context.remoteAddress?.ipAddress ?? "unknown", forwardedFor: request.headers[values: .init("x-forwarded-for")!], trusting: proxies)
    }

    static func clientAddress(peer: String, forwardedFor lines: [String], trusting proxies: TrustedProxies) -> String {
        proxies.client(peer: peer, forwardedFor: lines.map { Substring($0) }, peerTrusted: peer == "127.0.0.1" || peer == "::1")
    }

    @Sendable func jwks(request: Request, context: ServiceRequestContext) async throws -> Response {
        let data = try JSONEncoder().encode(ring.issuer.jwks)
        return Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
