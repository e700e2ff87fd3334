import NIOConcurrencyHelpers
import NIOCore

/// The last handler of an SMTP client channel: feeds what the server sends to an ``SMTPReplyParser`` and hands each
/// complete reply to the one command waiting for it. A reply that comes before anyone waits (the greeting) is kept for
/// the next ``nextReply(on:step:timeout:)``. A broken stream, a closed connection or an error in the pipeline (a failed
/// TLS handshake) fails the waiting command and every later one.
///
/// It sits behind a TLS handler added at the front of the pipeline at STARTTLS, so it always sees plain text.
final class SMTPClientHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    /// Replies the server may send ahead of being asked; more is a protocol violation (the client never pipelines).
    static let maximumBufferedReplies = 4

    /// A waiting command's promise and what to complete it with.
    typealias Delivery = (EventLoopPromise<SMTPReply>, Result<SMTPReply, SMTPError>)

    private struct State {
        var parser = SMTPReplyParser()
        var replies: [SMTPReply] = []
        var failure: SMTPError?
        var waiter: EventLoopPromise<SMTPReply>?

        /// Takes the waiter with what it should get, if there is a waiter and something to give it.
        mutating func delivery() -> Delivery? {
            guard let waiter else { return nil }
            if !replies.isEmpty {
                self.waiter = nil
                return (waiter, .success(replies.removeFirst()))
            }
            if let failure {
                self.waiter = nil
                return (waiter, .failure(failure))
            }
            return nil
        }
    }

    private let state = NIOLockedValueBox(State())

    /// The next reply, failing with ``SMTPError/timedOut(_:)`` naming `step` when none comes within `timeout`.
    func nextReply(on eventLoop: any EventLoop, step: String, timeout: TimeAmount) -> EventLoopFuture<SMTPReply> {
        let promise = eventLoop.makePromise(of: SMTPReply.self)
        let delivery = state.withLockedValue { state -> Delivery? in
            precondition(state.waiter == nil, "one SMTP command at a time")
            state.waiter = promise
            return state.delivery()
        }
        if case let (waiter, result)? = delivery {
            Self.complete(waiter, with: result)
        } else {
            let timer = eventLoop.scheduleTask(in: timeout) { self.timeOut(promise, step: step) }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        return promise.futureResult
    }

    /// Throws ``SMTPError/protocolViolation(_:)`` if the server sent anything nobody asked for yet: before a command,
    /// a reply already there would be taken for the command's own; after the 220 to STARTTLS, bytes already received
    /// came in plain text and must not be read as if they came over TLS (call it on the event loop there, before the
    /// TLS handler goes in, so no read can slip in between).
    func assertNothingBuffered(_ when: String) throws(SMTPError) {
        let clean = state.withLockedValue { $0.replies.isEmpty && !$0.parser.hasPartialReply }
        guard clean else { throw SMTPError.protocolViolation("server sent data nobody asked for \(when)") }
    }

    /// Fails `promise` with ``SMTPError/timedOut(_:)`` if it is still the one waiting (and every later command too).
    private func timeOut(_ promise: EventLoopPromise<SMTPReply>, step: String) {
        let timedOut = state.withLockedValue { state in
            guard state.waiter?.futureResult === promise.futureResult else { return false }
            state.waiter = nil
            if state.failure == nil { state.failure = .timedOut(step) }
            return true
        }
        if timedOut { promise.fail(SMTPError.timedOut(step)) }
    }

    /// Fails the waiting command (and every later one) with `error`, unless something failed first. Replies that came
    /// before are still handed out first: a server may send a final reply and close at once.
    func fail(with error: SMTPError) {
        let delivery = state.withLockedValue { state -> Delivery? in
            if state.failure == nil { state.failure = error }
            return state.delivery()
        }
        if case let (waiter, result)? = delivery { Self.complete(waiter, with: result) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let (delivery, failed) = state.withLockedValue { state -> (Delivery?, Bool) in
            if state.failure == nil {
                do throws(SMTPError) {
                    state.replies += try state.parser.parse(buffer.readableBytesView)
                    if state.replies.count > Self.maximumBufferedReplies {
                        throw SMTPError.protocolViolation("server sent replies nobody asked for")
                    }
                } catch {
                    state.failure = error
                }
            }
            return (state.delivery(), state.failure != nil)
        }
        if case let (waiter, result)? = delivery { Self.complete(waiter, with: result) }
        if failed { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(with: .connectionFailed("the server closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(with: .connectionFailed(String(describing: error)))
        context.close(promise: nil)
    }

    private static func complete(_ promise: EventLoopPromise<SMTPReply>, with result: Result<SMTPReply, SMTPError>) {
        switch result {
        case .success(let reply): promise.succeed(reply)
        case .failure(let error): promise.fail(error)
        }
    }
}
