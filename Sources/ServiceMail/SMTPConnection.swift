import Logging
import NIOCore
import NIOSSL

/// One open SMTP connection as the client drives it: a command out, its reply back, one at a time, each reply within
/// the timeout. Logs (at debug) the step and the reply code only, never a command's text (AUTH carries credentials).
struct SMTPConnection: Sendable {
    let channel: any Channel
    let handler: SMTPClientHandler
    let timeout: TimeAmount
    let logger: Logger

    /// Sends `command` (nil: only waits, for the greeting) and returns the reply if its code is one of `expected`; another
    /// code throws: 4xx ``SMTPError/transient(code:message:)``, 5xx ``SMTPError/permanent(code:message:)``, anything
    /// else ``SMTPError/protocolViolation(_:)``. `step` names the exchange in logs and errors.
    @discardableResult
    func exchange(
        _ command: String?,
        step: String,
        expecting expected: Set<Int>,
        timeout: TimeAmount? = nil
    ) async throws -> SMTPReply {
        if command != nil { try handler.assertNothingBuffered("before \(step)") }
        // The waiter and its timer go in before the write, so a server that stops reading cannot hold the send forever.
        let pending = handler.nextReply(on: channel.eventLoop, step: step, timeout: timeout ?? self.timeout)
        if let command {
            logger.debug("SMTP command", metadata: ["smtp.step": "\(step)"])
            let handler = self.handler
            channel.writeAndFlush(ByteBuffer(string: command + "\r\n")).whenFailure { error in
                handler.fail(with: .connectionFailed("write failed: \(error)"))
            }
        }
        let reply = try await pending.get()
        logger.debug("SMTP reply", metadata: ["smtp.step": "\(step)", "smtp.code": "\(reply.code)"])
        guard expected.contains(reply.code) else { throw SMTPError.unexpected(reply, at: step) }
        return reply
    }

    /// Puts a TLS client handler at the front of the pipeline after the server's 220 to STARTTLS; the handshake starts
    /// at once, and commands written meanwhile wait in the TLS handler until it is done.
    func startTLS(context: NIOSSLContext, serverHostname: String?) async throws {
        let channel = self.channel
        let handler = self.handler
        try await channel.eventLoop.submit {
            try handler.assertNothingBuffered("after its reply to STARTTLS")
            let tls = try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
            try channel.pipeline.syncOperations.addHandler(tls, position: .first)
        }.get()
    }
}
