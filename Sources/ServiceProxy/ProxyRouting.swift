import NIOCore
import NIOHTTP1

/// An upstream server a request can be forwarded to.
public struct ProxyUpstream: Hashable, Sendable {
    /// Name used in errors and logs (for example `user`).
    public let name: String
    public let host: String
    public let port: Int
    /// `host:port`, made once (traces report it on every request).
    public let address: String

    public init(name: String, host: String, port: Int) {
        self.name = name
        self.host = host
        self.port = port
        self.address = "\(host):\(port)"
    }

    // Identity is name, host and port; `address` follows from them and is left out of hashing.
    public static func == (lhs: ProxyUpstream, rhs: ProxyUpstream) -> Bool {
        lhs.port == rhs.port && lhs.host == rhs.host && lhs.name == rhs.name
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(host)
        hasher.combine(port)
    }
}

/// A complete response produced by the proxy itself (errors, its own small endpoints).
public struct ProxyResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response with `body` already encoded.
    public static func json(_ status: HTTPResponseStatus, _ body: String, headers: HTTPHeaders = [:]) -> ProxyResponse {
        var headers = headers
        headers.replaceOrAdd(name: "content-type", value: "application/json; charset=utf-8")
        return ProxyResponse(status: status, headers: headers, body: ByteBuffer(string: body))
    }
}

/// What to do with one request.
public enum ProxyDecision: Sendable {
    /// Forward to `upstream` with the request target replaced by `target` (path and query); `responseHeaders` are
    /// added to the upstream's response (e.g. rate-limit headers); `locations` maps the upstream's paths in `Location`
    /// and `Content-Location` back to the client's (the reverse of the target's rewrite).
    case forward(ProxyUpstream, target: String, responseHeaders: HTTPHeaders = [:], locations: ProxyPathRewrite? = nil)
    /// Answer locally.
    case respond(ProxyResponse)
    /// Answer locally once the whole request body has arrived (small control endpoints, such as a registry, hosted by
    /// the proxy's process); the body is bounded by the proxy's body limit.
    case handle(@Sendable (ByteBuffer) async -> ProxyResponse)
}

/// A path prefix the proxy swaps in response headers that name a resource: `/orders/7` from the upstream becomes
/// `/api/orders/7` for the client when the request's `/api/orders` was sent upstream as `/orders`.
public struct ProxyPathRewrite: Sendable, Equatable {
    /// The upstream's prefix.
    public var upstream: String
    /// The client's prefix for it.
    public var client: String

    public init(upstream: String, client: String) {
        self.upstream = upstream
        self.client = client
    }

    /// `value` with the upstream's prefix swapped for the client's, when it is a path under that prefix (whole
    /// segments only); anything else (another prefix, an absolute URL) unchanged.
    public func apply(to value: String) -> String {
        guard value.hasPrefix(upstream) else { return value }
        let rest = value.dropFirst(upstream.count)
        guard rest.isEmpty || rest.first == "/" || rest.first == "?" || rest.first == "#" else { return value }
        return client + rest
    }
}

/// A decision made at once on the event loop, or one that needs async work first (a token not yet verified, a health
/// report); the request body is held until a deferred decision arrives.
public enum ProxyRoute: Sendable {
    case decided(ProxyDecision)
    case deferred(@Sendable () async -> ProxyDecision)
}

/// What the proxy knows of a request besides its head.
public struct ProxyRequestInfo: Sendable {
    /// The request's correlation id (received or generated).
    public var correlationID: String
    /// The client's IP address (the TCP peer).
    public var clientAddress: String

    public init(correlationID: String, clientAddress: String) {
        self.correlationID = correlationID
        self.clientAddress = clientAddress
    }
}

/// How an exchange with an upstream chosen by the router ended.
public enum ProxyOutcome: Sendable, Equatable {
    /// The upstream answered with this status (and the response was relayed completely).
    case responded(HTTPResponseStatus)
    /// No connection could be made: nothing of the request reached the upstream.
    case unreachable
    /// The upstream closed the connection or timed out after the request was (or may have been) sent.
    case failed
    /// The client's own (shorter) deadline passed before the upstream answered: says nothing about the upstream, as a
    /// caller could otherwise eject healthy instances by asking for tiny deadlines.
    case clientDeadline
    /// The client went away or the proxy gave up for the client's sake (e.g. a body over the limit): says nothing
    /// about the upstream.
    case abandoned
}

/// Decides, for each request head, where it goes, and hears how each forwarded exchange ended (for load balancing and
/// per-instance circuit breakers). Called on the connection's event loop, so it must not block.
public protocol ProxyRouter: Sendable {
    func route(_ head: HTTPRequestHead, request: ProxyRequestInfo) -> ProxyRoute
    /// The exchange with `upstream` (from a `.forward` decision or ``alternative(after:)``) ended.
    func finished(_ upstream: ProxyUpstream, outcome: ProxyOutcome)
    /// Another upstream to try for a request that could not connect to any of `tried` (the last is the latest; nothing
    /// was sent, so any method may go elsewhere). Nil: answer 503.
    func alternative(after tried: [ProxyUpstream]) -> ProxyUpstream?
    /// The route a request took, for its log line: a template without ids or query (`/api/orders`), never the path.
    func routeName(_ head: HTTPRequestHead) -> String
}

extension ProxyRouter {
    /// The route a request took, for its log line: a template without ids or query (`/api/orders`), never the path.
    public func routeName(_ head: HTTPRequestHead) -> String { "-" }
    public func finished(_ upstream: ProxyUpstream, outcome: ProxyOutcome) {}
    public func alternative(after tried: [ProxyUpstream]) -> ProxyUpstream? { nil }
}
