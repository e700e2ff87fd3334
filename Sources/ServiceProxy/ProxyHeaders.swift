import Foundation
import NIOHTTP1
import ServiceCore

/// Header rules of the proxy: hop-by-hop headers stop here, the correlation id and the client address travel on.
enum ProxyHeaders {
    static let correlationHeader = CorrelationID.headerName

    /// Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy must not forward.
    /// Response headers that name a resource by its path.
    static let locationHeaders = ["location", "content-location"]

    static let hopByHop = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate"]

    /// The request's correlation id when it is a safe token (``CorrelationID/isValid(_:)``), otherwise a new one.
    static func correlationID(_ headers: HTTPHeaders, generator: inout RequestIDGenerator) -> String {
        if let value = headers.first(name: correlationHeader), CorrelationID.isValid(value) { return value }
        return generator.make()
    }

    /// GET, HEAD and OPTIONS without a body may be sent again safely.
    static func isReplayable(_ head: HTTPRequestHead) -> Bool {
        switch head.method {
        case .GET, .HEAD, .OPTIONS:
            !head.headers.contains(name: "content-length") && !head.headers.contains(name: "transfer-encoding")
        default:
            false
        }
    }

    static func isHopByHop(_ name: String) -> Bool {
        hopByHop.contains { $0.utf8.count == name.utf8.count && name.lowercased() == $0 }
    }

    /// The request's transfer codings, lowercased, in order; nil when it has none.
    static func transferCodings(_ headers: HTTPHeaders) -> [String]? {
        let values = headers[canonicalForm: "transfer-encoding"]
        guard !values.isEmpty else { return nil }
        return values.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    }

    static func prepareForwardedRequest(_ head: inout HTTPRequestHead, correlationID: String, clientAddress: String) {
        prepareForwardedRequest(&head.headers, correlationID: correlationID, clientAddress: clientAddress)
        // The body goes upstream framed as it came. NIO's encoder frames a GET, DELETE, OPTIONS or unknown method's body
        // only by `Content-Length` or a `Transfer-Encoding` spelled exactly `chunked`: any other spelling the parser
        // accepted (`Chunked`) would send the body unframed, where the upstream reads it as the next request.
        if head.headers.contains(name: "transfer-encoding") {
            head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        }
    }

    static func prepareForwardedRequest(_ headers: inout HTTPHeaders, correlationID: String, clientAddress: String) {
        removeHopByHop(&headers)
        headers.replaceOrAdd(name: correlationHeader, value: correlationID)
        if !clientAddress.isEmpty {
            // Every line the client sent, in order, then the peer: a proxy in front that adds a line of its own (rather
            // than appending to the last) keeps its place right of whatever the client wrote.
            let previous = headers["x-forwarded-for"]
            if previous.isEmpty {
                headers.add(name: "x-forwarded-for", value: clientAddress)
            } else {
                headers.replaceOrAdd(name: "x-forwarded-for", value: (previous + [clientAddress]).joined(separator: ", "))
            }
        }
    }

    static func prepareForwardedResponse(
        _ headers: inout HTTPHeaders, correlationID: String, keepAlive: Bool, locations: ProxyPathRewrite? = nil, server: String? = nil
    ) {
        removeHopByHop(&headers)
        headers.replaceOrAdd(name: correlationHeader, value: correlationID)
        if let server { headers.replaceOrAdd(name: "server", value: server) } else { headers.remove(name: "server") }
        if let locations {
            for name in locationHeaders {
                if let value = headers.first(name: name) {
                    let rewritten = locations.apply(to: value)
                    if rewritten != value { headers.replaceOrAdd(name: name, value: rewritten) }
                }
            }
        }
        if !keepAlive { headers.add(name: "connection", value: "close") }
    }

    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        // One pass to see whether there is anything to remove; usually there is not, and removal costs a scan per name.
        guard headers.contains(where: { isHopByHop($0.name) }) else { return }
        // Headers named by Connection are hop-by-hop too, except the message's framing and `Host`: `Connection:
        // content-length` would otherwise send a body upstream with nothing saying where it ends.
        for value in headers[canonicalForm: "connection"] {
            let name = String(value).lowercased()
            if !["close", "keep-alive", "content-length", "transfer-encoding", "host"].contains(name) { headers.remove(name: name) }
        }
        for name in hopByHop { headers.remove(name: name) }
    }
}
