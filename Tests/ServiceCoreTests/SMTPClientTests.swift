import Foundation
import Logging
import ServiceMail
import ServiceTesting
import Testing

/// The SMTP client against a real SMTP server (`Tests/Fixtures/smtp_server.py`, on aiosmtpd, one per test), and its URL
/// and reply parsing on their own.
@Suite struct SMTPClientTests {
    static let logger = Logger(label: "smtp-test")
    static let message = "From: Shop <shop@example.com>\r\nTo: a@example.com\r\nSubject: Test\r\n\r\nHello.\r\n"

    func client(_ url: String) throws -> SMTPClient {
        SMTPClient(configuration: try SMTPConfiguration(url: url), logger: Self.logger)
    }

    /// Sends `data` from shop@example.com through the server `url` names.
    func send(_ url: String, to recipients: [String] = ["a@example.com"], data: String = SMTPClientTests.message) async throws {
        try await client(url).send(from: "shop@example.com", to: recipients, data: data)
    }

    // MARK: Delivery

    @Test func aMessageArrivesOnceWithItsBodyUnstuffedAndCRLFLineEnds() async throws {
        try await SMTPTestServer.with([]) { server in
            // Bare LF line ends, UTF-8, a line that is a lone ".", lines starting with ".." and ".", no final line end.
            let data = "From: Shop <shop@example.com>\nTo: a@example.com\nSubject: Your order\n\nGrüße ✓\n.\n..two dots\n.one\nlast line"
            try await send("smtp://127.0.0.1:\(server.port)", to: ["a@example.com", "b@example.org"], data: data)
            let messages = try server.messages()
            try #require(messages.count == 1)
            #expect(messages[0].from == "shop@example.com")
            #expect(messages[0].recipients == ["a@example.com", "b@example.org"])
            let expected = data.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n"
            #expect(messages[0].data == Data(expected.utf8), "\(String(decoding: messages[0].data, as: UTF8.self).debugDescription)")
            #expect(messages[0].tls == false)
        }
    }

    @Test func authPlainWithTheRightPasswordDeliversAndAWrongOneIsPermanent() async throws {
        try await SMTPTestServer.with(["--auth", "mailer:p@ss:word"]) { server in
            try await send("smtp://mailer:p%40ss%3Aword@127.0.0.1:\(server.port)")
            let wrong = await #expect(throws: SMTPError.self) {
                try await send("smtp://mailer:nope@127.0.0.1:\(server.port)", to: ["b@example.com"])
            }
            #expect(wrong?.kind == "permanent")
            #expect(wrong?.replyCode == 535)
            #expect(wrong?.isPermanent == true)
            let messages = try server.messages()
            try #require(messages.count == 1)
            #expect(messages[0].auth == "mailer PLAIN")
            #expect(messages[0].recipients == ["a@example.com"])
        }
    }

    @Test func startTLSWithACertificateTrustedThroughCADelivers() async throws {
        let folder = try Self.temporaryFolder("smtp-tls")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (certificate, key) = try await Self.makeSelfSignedCertificate(in: folder)
        try await SMTPTestServer.with(["--tls-cert", certificate, "--tls-key", key, "--require-starttls"]) { server in
            // Without ca= the system's roots do not know the certificate: the handshake fails, nothing is sent.
            let untrusted = await #expect(throws: SMTPError.self) {
                try await send("smtp://localhost:\(server.port)")
            }
            #expect(untrusted?.kind == "connectionFailed")
            #expect(try server.messages().isEmpty)

            try await send("smtp://localhost:\(server.port)?starttls=required&ca=\(certificate)")
            let messages = try server.messages()
            try #require(messages.count == 1)
            #expect(messages[0].tls)
            #expect(messages[0].data == Data(Self.message.utf8))
        }
    }

    @Test func starttlsRequiredAgainstAServerWithoutTLSFailsPermanentlyAndSendsNothing() async throws {
        try await SMTPTestServer.with([]) { server in
            let error = await #expect(throws: SMTPError.self) {
                try await send("smtp://127.0.0.1:\(server.port)?starttls=required")
            }
            #expect(error == .tlsRequired)
            #expect(error?.isPermanent == true)
            let messages = try server.messages()
            #expect(messages.isEmpty)
        }
    }

    // MARK: Failures

    @Test func a451IsTransientAndTheRetryIsDeliveredOnce() async throws {
        try await SMTPTestServer.with(["--mode", "tempfail-first"]) { server in
            let smtp = try client("smtp://127.0.0.1:\(server.port)")
            let first = await #expect(throws: SMTPError.self) {
                try await smtp.send(from: "shop@example.com", to: ["a@example.com"], data: Self.message)
            }
            #expect(first?.kind == "transient")
            #expect(first?.replyCode == 451)
            #expect(first?.isPermanent == false)
            try await smtp.send(from: "shop@example.com", to: ["a@example.com"], data: Self.message)
            #expect(try server.messages().count == 1)
        }
    }

    @Test func a554IsPermanentAndNothingIsStored() async throws {
        try await SMTPTestServer.with(["--mode", "reject"]) { server in
            let error = await #expect(throws: SMTPError.self) {
                try await send("smtp://127.0.0.1:\(server.port)")
            }
            #expect(error?.kind == "permanent")
            #expect(error?.replyCode == 554)
            #expect(error?.isPermanent == true)
            let messages = try server.messages()
            #expect(messages.isEmpty)
        }
    }

    @Test func aSilentServerTimesOutWithinTheCommandTimeout() async throws {
        try await SMTPTestServer.with(["--mode", "silent"]) { server in
            let smtp = try client("smtp://127.0.0.1:\(server.port)?timeout_ms=300")
            let clock = ContinuousClock()
            let start = clock.now
            let error = await #expect(throws: SMTPError.self) {
                try await smtp.send(from: "shop@example.com", to: ["a@example.com"], data: Self.message)
            }
            let elapsed = clock.now - start
            #expect(error == .timedOut("greeting"))
            #expect(error?.isPermanent == false)
            #expect(elapsed >= .milliseconds(250))
            #expect(elapsed < .seconds(5), "took \(elapsed)")
        }
    }

    @Test func aPortNobodyListensOnIsATransientConnectionFailure() async throws {
        // A port that was free a moment ago: the fixture bound it, and has stopped.
        let port = try await SMTPTestServer.with(["--mode", "silent"]) { $0.port }
        let error = await #expect(throws: SMTPError.self) {
            try await send("smtp://127.0.0.1:\(port)?connect_timeout_ms=3000")
        }
        #expect(error?.kind == "connectionFailed")
        #expect(error?.isPermanent == false)
    }

    @Test func addressesThatCouldInjectCommandsAreRefusedBeforeAnythingIsSent() async throws {
        try await SMTPTestServer.with([]) { server in
            let smtp = try client("smtp://127.0.0.1:\(server.port)")
            let hostile = [
                "a@example.com>\r\nRCPT TO:<evil@example.com", "a@example.com\nDATA", "a@example.com>", "<a@example.com", "a @example.com",
                "a@example.com\0", "", "no-at-sign", "a@b@example.com", "@example.com", "a@", String(repeating: "a", count: 250) + "@example.com",
            ]
            for address in hostile {
                let asSender = await #expect(throws: SMTPError.self) {
                    try await smtp.send(from: address, to: ["ok@example.com"], data: Self.message)
                }
                #expect(asSender?.kind == "invalidAddress", "\(address.debugDescription)")
                #expect(asSender?.isPermanent == true)
                let asRecipient = await #expect(throws: SMTPError.self) {
                    try await smtp.send(from: "shop@example.com", to: ["ok@example.com", address], data: Self.message)
                }
                #expect(asRecipient?.kind == "invalidAddress", "\(address.debugDescription)")
            }
            #expect(try server.messages().isEmpty)
            // The server works: a clean send after all that arrives alone, with only its own recipient.
            try await smtp.send(from: "shop@example.com", to: ["ok@example.com"], data: Self.message)
            let messages = try server.messages()
            try #require(messages.count == 1)
            #expect(messages[0].recipients == ["ok@example.com"])
        }
    }

    // MARK: Configuration

    @Test func validURLsGiveTheirFields() throws {
        let plain = try SMTPConfiguration(url: "smtp://mail.example.com")
        #expect(plain.host == "mail.example.com")
        #expect(plain.port == 25)
        #expect(plain.security == .startTLS(required: false))
        #expect(plain.username == nil && plain.password == nil && plain.caFile == nil)
        #expect(plain.verify == SMTPConfiguration.Verification.full)
        #expect(plain.heloName == "localhost")
        #expect(plain.commandTimeout == .seconds(30))
        #expect(plain.connectTimeout == .seconds(10))

        let implicit = try SMTPConfiguration(url: "smtps://user%40corp:p%40ss%3Aw0rd@mail.example.com")
        #expect(implicit.port == 465)
        #expect(implicit.security == .implicitTLS)
        #expect(implicit.username == "user@corp")
        #expect(implicit.password == "p@ss:w0rd")
        #expect(implicit.redacted == "smtps://user@corp:***@mail.example.com:465")

        let tuned = try SMTPConfiguration(
            url: "smtp://127.0.0.1:2525?starttls=required&ca=/etc/mail/ca.pem&verify=none&helo=shop.example&timeout_ms=1500&connect_timeout_ms=250"
        )
        #expect(tuned.host == "127.0.0.1")
        #expect(tuned.port == 2525)
        #expect(tuned.security == .startTLS(required: true))
        #expect(tuned.caFile == "/etc/mail/ca.pem")
        #expect(tuned.verify == SMTPConfiguration.Verification.none)
        #expect(tuned.heloName == "shop.example")
        #expect(tuned.commandTimeout == .milliseconds(1500))
        #expect(tuned.connectTimeout == .milliseconds(250))

        #expect(try SMTPConfiguration(url: "smtp://relay:587?starttls=off").security == .plain)
        #expect(try SMTPConfiguration(url: "smtp://relay?starttls=opportunistic").security == .startTLS(required: false))
        let v6 = try SMTPConfiguration(url: "smtp://[::1]:2525")
        #expect(v6.host == "::1")
        #expect(v6.redacted == "smtp://[::1]:2525")
    }

    @Test(arguments: [
        "http://mail.example.com", "mail.example.com", "smtp://", "smtp://:25", "smtp://user:pw@", "smtp://host:0", "smtp://host:70000",
        "smtp://host:", "smtp://host:2a", "smtp://host:+25", "smtp://host?starttls=maybe", "smtp://host?timeout_ms=-1",
        "smtp://host?timeout_ms=0", "smtp://host?connect_timeout_ms=soon", "smtp://host?verify=partly", "smtp://host?bogus=1",
        "smtp://host?helo=a%0D%0AMAIL%20FROM", "smtp://host\r\n?helo=x", "smtp://host?helo=x\r\nQUIT", "smtp://us%0Aer:pw@host",
        "smtps://host?starttls=off", "smtp://host/path", "smtp://host?ca=", "smtp://host?verify=none&verify=full", "smtp://[::1",
    ])
    func unusableURLsThrowInvalid(url: String) {
        #expect(throws: SMTPConfiguration.Invalid.self) { try SMTPConfiguration(url: url) }
    }

    @Test func thePasswordNeverShowsInTextForms() throws {
        let configuration = try SMTPConfiguration(url: "smtp://mailer:topsecret@mail.example.com:587")
        #expect(configuration.redacted == "smtp://mailer:***@mail.example.com:587")
        var dumped = ""
        dump(configuration, to: &dumped)
        for text in [configuration.redacted, configuration.description, "\(configuration)", String(reflecting: configuration), dumped] {
            #expect(!text.contains("topsecret"), "\(text)")
        }
        let invalid = #expect(throws: SMTPConfiguration.Invalid.self) {
            try SMTPConfiguration(url: "smtp://mailer:topsecret@mail.example.com?starttls=maybe")
        }
        #expect(invalid?.description.contains("topsecret") == false)
    }

    // MARK: Replies

    @Test func multiLineRepliesAreReadWhateverTheChunks() throws {
        let text = "250-mail.example.com greets you\r\n250-SIZE 1000\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n220 ready\r\n354\r\n"
        let expected = [
            SMTPReply(code: 250, lines: ["mail.example.com greets you", "SIZE 1000", "AUTH PLAIN LOGIN", "8BITMIME"]),
            SMTPReply(code: 220, lines: ["ready"]),
            SMTPReply(code: 354, lines: [""]),
        ]
        let bytes = Array(text.utf8)
        for chunkSize in [1, 2, 7, 33, bytes.count] {
            var parser = SMTPReplyParser()
            var replies: [SMTPReply] = []
            for start in stride(from: 0, to: bytes.count, by: chunkSize) {
                replies += try parser.parse(bytes[start..<min(start + chunkSize, bytes.count)])
            }
            #expect(replies == expected, "chunks of \(chunkSize)")
            #expect(!parser.hasPartialReply)
        }
        var parser = SMTPReplyParser()
        #expect(try parser.parse(Array("250-first\r\n250".utf8)).isEmpty)
        #expect(parser.hasPartialReply)
        #expect(try parser.parse(Array(" second\r\n".utf8)) == [SMTPReply(code: 250, lines: ["first", "second"])])
        #expect(expected[0].isPositive && !expected[0].isTransient && !expected[0].isPermanent)
        #expect(SMTPReply(code: 451, lines: []).isTransient)
        #expect(SMTPReply(code: 554, lines: []).isPermanent && !SMTPReply(code: 554, lines: []).isPositive)
    }

    @Test func hostileRepliesAreProtocolErrorsNotCrashes() throws {
        let hostile: [(String, [UInt8])] = [
            ("a 10 KB line", Array(("250 " + String(repeating: "x", count: 10_240) + "\r\n").utf8)),
            ("a 10 KB line that never ends", Array(("250 " + String(repeating: "x", count: 10_240)).utf8)),
            ("a letter code", Array("abc \r\n".utf8)),
            ("a four-digit code", Array("2500 x\r\n".utf8)),
            ("no separator", Array("250x\r\n".utf8)),
            ("a short code", Array("25\r\n".utf8)),
            ("mixed codes", Array("250-first\r\n251 second\r\n".utf8)),
            ("101 lines", Array((String(repeating: "250-line\r\n", count: 100) + "250 last\r\n").utf8)),
            ("binary", [0x00, 0xFF, 0xFE, 0x0A]),
        ]
        for (name, bytes) in hostile {
            var parser = SMTPReplyParser()
            let error = #expect(throws: SMTPError.self, "\(name)") { try parser.parse(bytes) }
            #expect(error?.kind == "protocolViolation", "\(name)")
            // Once broken, it stays broken rather than resynchronising on whatever comes next.
            #expect(throws: SMTPError.self, "\(name)") { try parser.parse(Array("250 ok\r\n".utf8)) }
        }
        // Exactly at the limits is fine.
        var parser = SMTPReplyParser()
        let longest = "250 " + String(repeating: "x", count: SMTPReplyParser.maximumLineLength - 4) + "\r\n"
        let hundred = String(repeating: "250-line\r\n", count: SMTPReplyParser.maximumLines - 1) + "250 last\r\n"
        let replies = try parser.parse(Array((longest + hundred).utf8))
        #expect(replies.map(\.lines.count) == [1, SMTPReplyParser.maximumLines])
    }

    @Test func dotStuffingNormalisesLineEndsAndDoublesLeadingDots() {
        #expect(SMTPMessage.dotStuffed("a\nb\rc\r\nd") == "a\r\nb\r\nc\r\nd\r\n")
        #expect(SMTPMessage.dotStuffed(".\n..\n.x\nx.") == "..\r\n...\r\n..x\r\nx.\r\n")
        #expect(SMTPMessage.dotStuffed("a\r\r\nb\n") == "a\r\n\r\nb\r\n")
        #expect(SMTPMessage.dotStuffed("") == "")
    }

    // MARK: Helpers

    static func temporaryFolder(_ prefix: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    /// A self-signed certificate for `localhost` and its key, made by openssl in `folder`.
    static func makeSelfSignedCertificate(in folder: URL) async throws -> (certificate: String, key: String) {
        let certificate = folder.appendingPathComponent("cert.pem").path
        let key = folder.appendingPathComponent("key.pem").path
        let status = try await ChildProcess.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", certificate,
        ])
        try #require(status == 0, "openssl req failed")
        return (certificate, key)
    }
}

extension SMTPError {
    /// The case's name, so a test can say which kind of failure it expects in one line.
    var kind: String {
        switch self {
        case .transient: "transient"
        case .permanent: "permanent"
        case .connectionFailed: "connectionFailed"
        case .timedOut: "timedOut"
        case .protocolViolation: "protocolViolation"
        case .tlsRequired: "tlsRequired"
        case .authenticationUnsupported: "authenticationUnsupported"
        case .invalidAddress: "invalidAddress"
        }
    }
}
