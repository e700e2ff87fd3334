import Foundation
import NIOCore
import NIOHTTP1
import ServiceAuth
import ServiceCore
import ServiceProxy
import ShopContracts

/// The gateway's routing table, as the guide's `http-proxy-middleware` setup: `/api/X…` goes to service X as `/X…`.
/// Protected routes need a valid bearer token before anything is forwarded.
struct GatewayRouter: ProxyRouter {
    /// One `/api` prefix and where it goes.
    struct Route: Sendable {
        var prefix: String
        var rewrite: String
        var upstream: ProxyUpstream
    }

    let routes: [Route]
    let verifier: TokenVerifier
    let health: GatewayHealth

    init(configuration: GatewayConfiguration, verifier: TokenVerifier, health: GatewayHealth) throws {
        let table: [(String, String, ServiceName)] = [
            ("/api/users", "/users", .user),
            ("/api/auth", "/auth", .auth),
            ("/api/orders", "/orders", .order),
            ("/api/checkout", "/checkout", .order),
            ("/api/payments", "/payments", .payment),
            ("/api/inventory", "/inventory", .inventory),
            ("/api/notifications", "/notifications", .notification),
            ("/api/admin/dlq", "/admin/dlq", .order),
        ]
        self.routes = try table.map { Route(prefix: $0.0, rewrite: $0.1, upstream: try configuration.upstream($0.2)) }
        self.verifier = verifier
        self.health = health
    }

    func route(_ head: HTTPRequestHead, correlationID: String) -> ProxyRoute {
        let uri = head.uri
        let pathEnd = uri.firstIndex(of: "?") ?? uri.endIndex
        let path = uri[..<pathEnd]

        if path.hasPrefix("/health") {
            return localRoute(path: path, method: head.method)
        }
        guard let route = routes.first(where: { Self.matches(path, prefix: $0.prefix) }) else {
            return .decided(.respond(.json(.notFound, #"{"error":"Not found"}"#)))
        }
        guard !Self.hasDotSegment(path) else {
            return .decided(.respond(.json(.badRequest, #"{"error":"Invalid path"}"#)))
        }
        let target = route.rewrite + uri[uri.index(uri.startIndex, offsetBy: route.prefix.count)...]
        let forward = ProxyDecision.forward(route.upstream, target: target)
        if Self.isPublic(method: head.method, prefix: route.prefix, path: path) {
            return .decided(forward)
        }
        guard let token = BearerToken.extract(head.headers.first(name: "authorization")) else {
            return .decided(.respond(.json(.unauthorized, #"{"error":"Access denied"}"#)))
        }
        if verifier.cachedIdentity(for: token) != nil {
            return .decided(forward)
        }
        let verifier = self.verifier
        return .deferred {
            do {
                _ = try await verifier.verify(token)
                return forward
            } catch is TokenVerifier.Failure {
                return .respond(
                    .json(
                        .unauthorized,
                        #"{"error":"Invalid token"}"#,
                        headers: ["www-authenticate": #"Bearer error="invalid_token", error_description="The access token is invalid or expired""#]
                    )
                )
            } catch {
                return .respond(.json(.serviceUnavailable, #"{"error":"Token keys unavailable","service":"auth"}"#))
            }
        }
    }

    private func localRoute(path: Substring, method: HTTPMethod) -> ProxyRoute {
        guard method == .GET || method == .HEAD else {
            return .decided(.respond(.json(.methodNotAllowed, #"{"error":"Method not allowed"}"#)))
        }
        switch path {
        case "/health/live":
            return .decided(.respond(.json(.ok, #"{"service":"gateway","status":"alive"}"#)))
        case "/health", "/health/ready":
            let health = self.health
            return .deferred { await health.response() }
        default:
            return .decided(.respond(.json(.notFound, #"{"error":"Not found"}"#)))
        }
    }

    /// Signup, login, token and key endpoints, and catalog reads need no token.
    static func isPublic(method: HTTPMethod, prefix: String, path: Substring) -> Bool {
        switch prefix {
        case "/api/auth": true
        case "/api/users": method == .POST && (path == "/api/users" || path == "/api/users/")
        case "/api/inventory": method == .GET || method == .HEAD
        default: false
        }
    }

    /// `/api/users`, `/api/users/…` and `/api/users?…` match `/api/users`; `/api/usersX` does not.
    static func matches(_ path: Substring, prefix: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        let rest = path.dropFirst(prefix.count)
        return rest.isEmpty || rest.hasPrefix("/")
    }

    /// True when a segment is `.` or `..`, literally or percent-encoded: such a path could escape its prefix upstream.
    static func hasDotSegment(_ path: Substring) -> Bool {
        // Fast path: without "/." or "%" no segment can be a dot segment or hide a slash.
        var previous: UInt8 = 0
        var suspicious = false
        for byte in path.utf8 {
            if byte == UInt8(ascii: "%") || (byte == UInt8(ascii: ".") && previous == UInt8(ascii: "/")) {
                suspicious = true
                break
            }
            previous = byte
        }
        guard suspicious else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).contains { segment in
            let decoded = (String(segment).removingPercentEncoding ?? String(segment))
            return decoded == "." || decoded == ".." || decoded.contains("/")
        }
    }
}
