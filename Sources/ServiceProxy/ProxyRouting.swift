import NIOCore
import NIOHTTP1

/// An upstream server a request can be forwarded to.
public struct ProxyUpstream: Hashable, Sendable {
    /// Name used in errors and logs (for example `user`).
    public var name: String
    public var host: String
    public var port: Int

    public init(name: String, host: String, port: Int) {
        self.name = name
        self.host = host
        self.port = port
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
    /// Forward to `upstream` with the request target replaced by `target` (path and query).
    case forward(ProxyUpstream, target: String)
    /// Answer locally.
    case respond(ProxyResponse)
}

/// A decision made at once on the event loop, or one that needs async work first (a token not yet verified, a health
/// report); the request body is held until a deferred decision arrives.
public enum ProxyRoute: Sendable {
    case decided(ProxyDecision)
    case deferred(@Sendable () async -> ProxyDecision)
}

/// Decides, for each request head, where it goes. Called on the connection's event loop, so it must not block.
public protocol ProxyRouter: Sendable {
    func route(_ head: HTTPRequestHead, correlationID: String) -> ProxyRoute
}
