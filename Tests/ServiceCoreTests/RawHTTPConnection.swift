import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A bare TCP connection for protocol-level tests (HTTP/1.0, `Expect: 100-continue`, stalled uploads) that a
/// well-behaved HTTP client will not produce.
final class RawHTTPConnection: Sendable {
    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = NIOLockedValueBox("")
        let bytes = NIOLockedValueBox<[UInt8]>([])
        let closed = NIOLockedValueBox(false)

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            received.withLockedValue { $0 += String(buffer: buffer) }
            bytes.withLockedValue { $0 += buffer.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed.withLockedValue { $0 = true }
        }
    }

    struct TimedOut: Error {
        var waitingFor: String
        var received: String
    }

    let channel: any Channel
    let collector: Collector

    init(port: Int) async throws {
        let collector = Collector()
        self.collector = collector
        self.channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    }

    /// Everything received so far.
    var received: String { collector.received.withLockedValue { $0 } }
    /// The bytes after the first blank line (the body of a single response).
    var bodyBytes: Int {
        let all = collector.bytes.withLockedValue { $0 }
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = (0...(max(0, all.count - 4))).first(where: { Array(all[$0..<min(all.count, $0 + 4)]) == separator }) else { return 0 }
        return all.count - end - 4
    }
    /// Whether `received` holds one whole response: its head, then as many bytes as its `Content-Length` says, or a
    /// chunked body up to its last chunk.
    static func isComplete(_ received: String) -> Bool {
        guard let end = received.range(of: "\r\n\r\n") else { return false }
        let head = received[..<end.lowerBound].lowercased()
        let body = received[end.upperBound...]
        if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
            let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        {
            return body.utf8.count >= length
        }
        if head.contains("transfer-encoding: chunked") { return body.hasSuffix("0\r\n\r\n") }
        return true
    }
    var isClosed: Bool { collector.closed.withLockedValue { $0 } }

    /// Waits (polling, with a deadline) until `condition` holds for what was received.
    func wait(for description: String, timeout: Duration = .seconds(20), _ condition: @Sendable (String, Bool) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(received, isClosed) {
            guard ContinuousClock.now < deadline else { throw TimedOut(waitingFor: description, received: String(received.prefix(300))) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func close() async {
        try? await channel.close().get()
    }
}
