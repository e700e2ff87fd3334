import HTTPTypes
import Hummingbird
import ServiceCore
import ServiceHTTP

/// Requires a valid bearer token: no token → 401 `Access denied`; a bad or expired one → 401 with
/// `WWW-Authenticate: Bearer error="invalid_token"`. Sets ``ServiceRequestContext/identity``.
public struct AuthMiddleware: RouterMiddleware {
    public typealias Context = ServiceRequestContext
    let verifier: TokenVerifier

    public init(verifier: TokenVerifier) {
        self.verifier = verifier
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token = BearerToken.extract(request.headers[.authorization]) else {
            throw APIError.unauthorized()
        }
        var context = context
        context.identity = try await verifier.identity(for: token)
        context.logger[metadataKey: "subject"] = .string(context.identity?.subject ?? "")
        return try await next(request, context)
    }
}

extension TokenVerifier {
    /// Verifies `token`, mapping a refusal to the 401 a client should see.
    public func identity(for token: String) async throws -> Identity {
        do {
            return try await verify(token)
        } catch is TokenVerifier.Failure {
            throw APIError.invalidToken()
        }
    }
}

/// Parsing of `Authorization: Bearer <token>`.
public enum BearerToken {
    /// The token of a `Bearer` authorization header value, or nil.
    public static func extract(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}

/// After ``AuthMiddleware``: lets through only a service token holding `scope` (403 otherwise) — for the internal
/// endpoints one service offers another, so that a user token, or a service without the permission, is refused.
public struct RequireServiceScope: RouterMiddleware {
    public typealias Context = ServiceRequestContext
    let scope: String

    public init(_ scope: String) {
        self.scope = scope
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let identity = context.identity else { throw APIError.unauthorized() }
        guard identity.isService(with: scope) else { throw APIError.forbidden("This endpoint needs a service token with scope \(scope)") }
        // A caller naming itself (`X-Service-ID`) must be the service its token is for.
        if let claimed = request.headers[HTTPField.Name("x-service-id")!], claimed != identity.subject {
            throw APIError.forbidden("X-Service-ID does not match the token")
        }
        return try await next(request, context)
    }
}

/// After ``AuthMiddleware``: lets through only people (customers and admins), never a service token — a service acts
/// for nobody, so it cannot place orders or read a user's data through the user-facing routes (403).
public struct RequireUser: RouterMiddleware {
    public typealias Context = ServiceRequestContext

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let identity = context.identity else { throw APIError.unauthorized() }
        guard identity.role != .service else { throw APIError.forbidden("This endpoint is for users, not services") }
        return try await next(request, context)
    }
}
