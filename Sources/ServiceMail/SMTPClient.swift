// Written by hand on SwiftNIO: no Swift SMTP client library is available to this project.

import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Sends mail through one SMTP server (a relay or a submission service), one whole conversation per message on a
/// fresh connection. Failures are ``SMTPError``s; ``SMTPError/isPermanent`` says whether retrying can help.
public struct SMTPClient: Sendable {
    public let configuration: SMTPConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger

    /// A client for the server `configuration` names. It logs at debug level only, and never a password or a message.
    public init(
        configuration: SMTPConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Sends `data` — a complete message, headers and body, with any line ends — from `sender` to `recipients`, and
    /// returns once the server has accepted it. Addresses are checked before anything is sent. Throws ``SMTPError``,
    /// or `CancellationError` when the task is cancelled; the connection is closed whatever happens.
    public func send(from sender: String, to recipients: [String], data: String) async throws {
        try SMTPMessage.validateAddress(sender)
        guard !recipients.isEmpty else { throw SMTPError.invalidAddress("no recipients") }
        for recipient in recipients { try SMTPMessage.validateAddress(recipient) }
        try Task.checkCancellation()

        var logger = self.logger
        logger[metadataKey: "smtp.server"] = "\(configuration.host):\(configuration.port)"
        let handler = SMTPClientHandler()
        let channel = try await connect(handler: handler)
        let connection = SMTPConnection(
            channel: channel, handler: handler, timeout: TimeAmount(configuration.commandTimeout), logger: logger
        )
        do {
            try await withTaskCancellationHandler {
                try await converse(on: connection, from: sender, to: recipients, data: data)
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch {
            try? await channel.close().get()
            try Task.checkCancellation()
            throw (error as? SMTPError) ?? SMTPError.connectionFailed(String(describing: error))
        }
        try? await channel.close().get()
    }

    private func connect(handler: SMTPClientHandler) async throws(SMTPError) -> any Channel {
        let tls: NIOSSLContext? = try configuration.security == .implicitTLS ? makeTLSContext() : nil
        let serverHostname = self.serverHostname
        do {
            return try await ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            let tlsHandler = try NIOSSLClientHandler(context: tls, serverHostname: serverHostname)
                            try channel.pipeline.syncOperations.addHandler(tlsHandler)
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(host: configuration.host, port: configuration.port)
                .get()
        } catch ChannelError.connectTimeout(_) {
            throw SMTPError.timedOut("connect")
        } catch {
            throw SMTPError.connectionFailed("\(configuration.host):\(configuration.port): \(error)")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    /// The conversation, from the greeting to QUIT.
    private func converse(on connection: SMTPConnection, from sender: String, to recipients: [String], data: String) async throws {
        try await connection.exchange(nil, step: "greeting", expecting: [220])
        var extensions = try await hello(on: connection)
        var encrypted = configuration.security == .implicitTLS
        if case .startTLS(let required) = configuration.security {
            if extensions["STARTTLS"] != nil {
                try await connection.exchange("STARTTLS", step: "STARTTLS", expecting: [220])
                try await connection.startTLS(context: makeTLSContext(), serverHostname: serverHostname)
                extensions = try await hello(on: connection)
                encrypted = true
            } else if required {
                throw SMTPError.tlsRequired
            }
        }
        if let username = configuration.username {
            // A password never crosses the network in clear text: without TLS, AUTH only to a server on this machine (a
            // server that stopped offering STARTTLS may be an attacker stripping it).
            guard encrypted || Self.isLoopback(configuration.host) else { throw SMTPError.tlsRequired }
            let password = configuration.password ?? ""
            try await authenticate(on: connection, username: username, password: password, offered: extensions["AUTH"] ?? [])
        }
        let body = SMTPMessage.dotStuffed(data)
        let eightBit = extensions["8BITMIME"] != nil && body.utf8.contains { $0 >= 0x80 }
        let mailFrom = "MAIL FROM:<\(sender)>" + (eightBit ? " BODY=8BITMIME" : "")
        try await connection.exchange(mailFrom, step: "MAIL FROM", expecting: [250])
        for recipient in recipients {
            try await connection.exchange("RCPT TO:<\(recipient)>", step: "RCPT TO", expecting: [250, 251])
        }
        try await connection.exchange("DATA", step: "DATA", expecting: [354])
        try await connection.exchange(body + ".", step: "end of DATA", expecting: [250])
        connection.logger.debug("SMTP message accepted", metadata: ["smtp.recipients": "\(recipients.count)"])
        // Accepted at the 250: a QUIT that goes unanswered changes nothing.
        _ = try? await connection.exchange("QUIT", step: "QUIT", expecting: [221], timeout: min(connection.timeout, .seconds(5)))
    }

    /// EHLO, or HELO when the server refuses EHLO with 5xx; returns the extensions announced (none after HELO).
    private func hello(on connection: SMTPConnection) async throws -> [String: [String]] {
        do {
            return try await connection.exchange("EHLO \(configuration.heloName)", step: "EHLO", expecting: [250]).extensions
        } catch SMTPError.permanent(_, _) {
            try await connection.exchange("HELO \(configuration.heloName)", step: "HELO", expecting: [250])
            return [:]
        }
    }

    /// AUTH PLAIN when offered, else AUTH LOGIN; a 535 (bad credentials) is a permanent error like any 5xx.
    private func authenticate(on connection: SMTPConnection, username: String, password: String, offered: [String]) async throws {
        func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
        if offered.contains("PLAIN") {
            let token = base64([0] + Array(username.utf8) + [0] + Array(password.utf8))
            try await connection.exchange("AUTH PLAIN \(token)", step: "AUTH PLAIN", expecting: [235])
        } else if offered.contains("LOGIN") {
            try await connection.exchange("AUTH LOGIN", step: "AUTH LOGIN", expecting: [334])
            try await connection.exchange(base64(Array(username.utf8)), step: "AUTH LOGIN user name", expecting: [334])
            try await connection.exchange(base64(Array(password.utf8)), step: "AUTH LOGIN password", expecting: [235])
        } else {
            throw SMTPError.authenticationUnsupported
        }
    }

    private func makeTLSContext() throws(SMTPError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = configuration.caFile { tls.trustRoots = .file(caFile) }
        if configuration.verify == SMTPConfiguration.Verification.none { tls.certificateVerification = .none }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SMTPError.connectionFailed("cannot set up TLS: \(error)")
        }
    }

    /// The name for SNI and certificate checks: the host, unless it is an IP address (checked against the certificate's
    /// IP entries instead).
    private var serverHostname: String? {
        (try? SocketAddress(ipAddress: configuration.host, port: 0)) == nil ? configuration.host : nil
    }
}
