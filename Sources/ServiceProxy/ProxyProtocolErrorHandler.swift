import NIOCore
import NIOHTTP1

/// Answers a request the HTTP parser refuses (a malformed request line or header, a smuggling shape) with a JSON error
/// and closes the connection, where NIO's own `HTTPServerProtocolErrorHandler` answers 400 with an empty body: every
/// error the gateway gives is JSON. A method token the parser does not know at all is 501 (RFC 9110 §15.6.2). When a
/// response is already under way nothing more can be said: the connection is just closed.
final class ProxyProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseUnderway = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !responseUnderway {
            let (status, message): (HTTPResponseStatus, String) =
                parserError == .invalidMethod ? (.notImplemented, "Method not implemented") : (.badRequest, "Malformed HTTP request")
            let body = context.channel.allocator.buffer(string: #"{"error":"\#(message)"}"#)
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/json; charset=utf-8")
            headers.add(name: "content-length", value: String(body.readableBytes))
            headers.add(name: "connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            responseUnderway = true
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
        // The handlers after this one see the error too (the proxy handler closes its exchange).
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            responseUnderway = true
        case .end:
            responseUnderway = false
        default:
            break
        }
        context.write(data, promise: promise)
    }
}
