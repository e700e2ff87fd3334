import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceProxy
import ShopContracts

/// The gateway's routing table, as the guide's `http-proxy-middleware` setup: `/api/X…` goes to service X as `/X…`.
/// Protected routes need a valid bearer token before anything is forwarded. Each request is counted against its route
/// group's rate limit, then sent to an instance of the service (``GatewayUpstreams``). The registry API and health
/// are answered here.
struct GatewayRouter: ProxyRouter {
    /// One `/api` prefix and where it goes.
    struct Route: Sendable {
        var prefix: String
        var rewrite: String
        var service: ServiceName
        /// The rate-limit group (`orders` for `/api/orders`).
        var group: String
    }

    static let table: [(String, String, ServiceName)] = [
        ("/api/users", "/users", .user),
        ("/api/auth", "/auth", .auth),
        ("/api/orders", "/orders", .order),
        ("/api/checkout", "/checkout", .order),
        ("/api/payments", "/payments", .payment),
        ("/api/inventory", "/inventory", .inventory),
        ("/api/notifications", "/notifications", .notification),
        ("/api/admin/dlq", "/admin/dlq", .order),
        ("/api/admin/sagas", "/admin/sagas", .order),
    ]

    /// The public API's OpenAPI document (`/api/openapi.json`), made from the services' documents.
    static let publicDocument = ByteBuffer(string: OpenAPIDocuments.publicAPI)

    /// The rate-limit groups: the first path segment after `/api`.
    static let groups: [String] = Array(Set(table.map { group(of: $0.0) })).sorted()

    static func group(of prefix: String) -> String {
        String(prefix.dropFirst("/api/".count).split(separator: "/").first ?? "")
    }

    /// What a listener of the gateway answers.
    enum Exposure: Sendable {
        /// The public API, health, metrics and the registry on one port (`shop up`, and any gateway without
        /// `GATEWAY_INTERNAL_PORT`).
        case everything
        /// The port clients reach: `/api/…` and `/health/live` only; the rest answers 404 as an unknown path would.
        case publicOnly
        /// The port only the cluster reaches: health (detailed), `/metrics`, `/register` and `/services`; no `/api`.
        case internalOnly
    }

    let exposure: Exposure
    let routes: [Route]
    let verifier: TokenVerifier
    let health: GatewayHealth
    let upstreams: GatewayUpstreams
    let limits: GatewayRateLimits
    let registry: RegistryAPI
    let trustedProxies: TrustedProxies

    init(
        exposure: Exposure = .everything, verifier: TokenVerifier, health: GatewayHealth, upstreams: GatewayUpstreams, limits: GatewayRateLimits,
        registry: RegistryAPI, trustedProxies: TrustedProxies = TrustedProxies()
    ) {
        self.exposure = exposure
        self.trustedProxies = trustedProxies
        self.routes = Self.table.map { Route(prefix: $0.0, rewrite: $0.1, service: $0.2, group: Self.group(of: $0.0)) }
        self.verifier = verifier
        self.health = health
        self.upstreams = upstreams
        self.limits = limits
        self.registry = registry
    }

    func routeName(_ head: HTTPRequestHead) -> String {
        let uri = head.uri
        let path = uri[..<(uri.firstIndex(of: "?") ?? uri.endIndex)]
        if let route = routes.first(where: { Self.matches(path, prefix: $0.prefix) }) { return route.prefix }
        if path.hasPrefix("/health") || path == "/metrics" { return String(path.prefix(16)) }
        if path == "/api/openapi.json" { return "/api/openapi.json" }
        if RegistryAPI.handles(path) { return GatewayRouter.matches(path, prefix: "/register") ? "/register" : "/services" }
        return "(no route)"
    }

    func finished(_ upstream: ProxyUpstream, outcome: ProxyOutcome) {
        upstreams.finished(upstream, outcome: outcome)
    }

    func alternative(after tried: [ProxyUpstream]) -> ProxyUpstream? {
        upstreams.alternative(after: tried)
    }

    func route(_ head: HTTPRequestHead, request: ProxyRequestInfo) -> ProxyRoute {
        let uri = head.uri
        let pathEnd = uri.firstIndex(of: "?") ?? uri.endIndex
        let path = uri[..<pathEnd]

        switch exposure {
        case .everything:
            break
        case .publicOnly:
            if path == "/health/live" { return localRoute(path: path, method: head.method) }
            guard Self.matches(path, prefix: "/api") else { return .decided(.respond(.json(.notFound, #"{"error":"Not found"}"#))) }
        case .internalOnly:
            guard !Self.matches(path, prefix: "/api") else { return .decided(.respond(.json(.notFound, #"{"error":"Not found"}"#))) }
        }
        if path.hasPrefix("/health") || path == "/metrics" {
            return localRoute(path: path, method: head.method)
        }
        if RegistryAPI.handles(path) {
            return registry.route(head, path: path)
        }
        if path == "/api/openapi.json" {
            guard head.method == .GET || head.method == .HEAD else {
                return .decided(.respond(.json(.methodNotAllowed, #"{"error":"Method not allowed"}"#, headers: ["allow": "GET, HEAD"])))
            }
            return .decided(
                .respond(ProxyResponse(status: .ok, headers: ["content-type": "application/json; charset=utf-8"], body: Self.publicDocument)))
        }
        guard let route = routes.first(where: { Self.matches(path, prefix: $0.prefix) }) else {
            return .decided(.respond(.json(.notFound, #"{"error":"Not found"}"#)))
        }
        guard !Self.hasDotSegment(path) else {
            return .decided(.respond(.json(.badRequest, #"{"error":"Invalid path"}"#)))
        }
        let target = route.rewrite + uri[uri.index(uri.startIndex, offsetBy: route.prefix.count)...]
        // The client key: the IP address on public routes (so tokens of many accounts cannot buy more login attempts),
        // the user on protected ones. Behind trusted proxies, the address they forwarded for.
        if Self.isPublic(method: head.method, prefix: route.prefix, path: path) {
            return decide(route, target: target, client: "ip:\(clientAddress(head, request: request))")
        }
        guard let token = BearerToken.extract(head.headers.first(name: "authorization")) else {
            return .decided(.respond(.json(.unauthorized, #"{"error":"Access denied"}"#)))
        }
        if let known = verifier.cachedIdentity(for: token) {
            return decide(route, target: target, client: "user:\(known.subject)")
        }
        return .deferred { [self] in
            do {
                let identity = try await verifier.verify(token)
                // Already asynchronous here: counted in whichever store there is.
                return await forwardCounted(route, target: target, client: "user:\(identity.subject)")
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

    /// The client's address: the peer's, or the one a trusted proxy forwarded for.
    func clientAddress(_ head: HTTPRequestHead, request: ProxyRequestInfo) -> String {
        guard !trustedProxies.isEmpty else { return request.clientAddress }
        return trustedProxies.client(peer: request.clientAddress, forwardedFor: head.headers[canonicalForm: "x-forwarded-for"])
    }

    /// The decision now, or — when the group's limit is counted in a store shared with other gateways — once the store
    /// has answered.
    func decide(_ route: Route, target: String, client: @autoclosure () -> String) -> ProxyRoute {
        guard limits.isShared, limits.rate(for: route.group) != nil else { return .decided(forward(route, target: target, client: client())) }
        let client = client()
        return .deferred { [self] in await forwardCounted(route, target: target, client: client) }
    }

    /// Counts the request against its group's limit (the client key is only made when a limit applies), then picks an
    /// instance of the service.
    func forward(_ route: Route, target: String, client: @autoclosure () -> String) -> ProxyDecision {
        var headers: HTTPHeaders = [:]
        if limits.rate(for: route.group) != nil {
            let (limitHeaders, refusal) = limits.check(group: route.group, client: client())
            if let refusal { return .respond(refusal) }
            headers = limitHeaders
        }
        return pick(route, target: target, headers: headers)
    }

    /// ``forward(_:target:client:)`` with the limit counted asynchronously (in the shared store, when there is one).
    func forwardCounted(_ route: Route, target: String, client: String) async -> ProxyDecision {
        let (headers, refusal) = await limits.check(group: route.group, client: client)
        if let refusal { return .respond(refusal) }
        return pick(route, target: target, headers: headers)
    }

    /// An instance of the route's service, or 503 when none can take the request.
    func pick(_ route: Route, target: String, headers: HTTPHeaders) -> ProxyDecision {
        guard let upstream = upstreams.pick(route.service.rawValue) else {
            Counter(label: "gateway_no_instance_total", dimensions: [("target", route.service.rawValue)]).increment()
            // Every instance ejected by its breaker, or at its bound of requests in flight.
            return .respond(
                .json(
                    .serviceUnavailable,
                    #"{"error":"Service unavailable (no instance can take the request)","service":"\#(route.service.rawValue)"}"#, headers: headers)
            )
        }
        return .forward(
            upstream, target: target, responseHeaders: headers, locations: ProxyPathRewrite(upstream: route.rewrite, client: route.prefix))
    }

    private func localRoute(path: Substring, method: HTTPMethod) -> ProxyRoute {
        guard method == .GET || method == .HEAD else {
            return .decided(.respond(.json(.methodNotAllowed, #"{"error":"Method not allowed"}"#, headers: ["allow": "GET, HEAD"])))
        }
        switch path {
        case "/health/live":
            return .decided(.respond(.json(.ok, #"{"service":"gateway","status":"alive"}"#)))
        case "/metrics":
            return .decided(
                .respond(
                    ProxyResponse(
                        status: .ok, headers: ["content-type": ServiceMetrics.contentType, "cache-control": "no-store"],
                        body: ServiceMetrics.exposition()))
            )
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
