import Logging
import ServiceMail
import ServiceMessaging

/// Sends mail through an SMTP server (`MAIL_SMTP_URL`): one conversation per message, the message rendered as
/// RFC 5322 with a stable `Message-ID` (the notification's id, so a receiving system can recognise a repeat).
struct SMTPMailSender: MailSender {
    let client: SMTPClient

    init(url: String, logger: Logger) throws {
        client = SMTPClient(configuration: try SMTPConfiguration(url: url), logger: logger)
    }

    func send(_ message: MailMessage) async throws {
        do {
            try await client.send(from: message.fromAddress, to: [message.toAddress], data: RFC5322.render(message))
        } catch let error as SMTPError where error.isPermanent && Self.isAboutTheMessage(error) {
            throw MailRefused(reason: "\(error)")
        }
    }

    /// A 5xx for this message (an address or content refused) is final; a refusal of our own set-up (credentials, TLS,
    /// AUTH) is retried with backoff, so the mail waits for the configuration to be mended instead of being dropped.
    static func isAboutTheMessage(_ error: SMTPError) -> Bool {
        switch error {
        case .permanent(let code, _): ![530, 534, 535, 538].contains(code)
        case .invalidAddress: true
        default: false
        }
    }
}

/// The mail server refused a message for good (a 5xx reply, a bad address): it is dead-lettered, never retried.
struct MailRefused: PermanentFailure {
    var reason: String
    var description: String { "mail refused: \(reason)" }
}
