/// Why a send failed. ``isPermanent`` tells a caller whether trying the same message again later can help.
public enum SMTPError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The server answered 4xx: try again later.
    case transient(code: Int, message: String)
    /// The server answered 5xx (a 535 to AUTH included): the same message will fail again.
    case permanent(code: Int, message: String)
    /// The connection could not be made, or broke (TLS handshake failures included).
    case connectionFailed(String)
    /// No reply within the configured time; the associated value names the step (`"connect"`, `"greeting"`, `"DATA"`…).
    case timedOut(String)
    /// The server sent something that is not SMTP, or a reply that makes no sense at that step.
    case protocolViolation(String)
    /// `starttls=required`, and the server does not offer STARTTLS.
    case tlsRequired
    /// Credentials are configured, and the server offers neither AUTH PLAIN nor AUTH LOGIN.
    case authenticationUnsupported
    /// An envelope address that must not be sent (empty, too long, no single `@`, or with characters that could
    /// inject commands); nothing was sent.
    case invalidAddress(String)

    /// True when retrying cannot help: a 5xx reply, a TLS or AUTH requirement the server cannot meet, or a bad address.
    /// Everything else (4xx, connection failures, timeouts, broken conversations) is worth retrying.
    public var isPermanent: Bool {
        switch self {
        case .permanent, .tlsRequired, .authenticationUnsupported, .invalidAddress: true
        case .transient, .connectionFailed, .timedOut, .protocolViolation: false
        }
    }

    /// The server's reply code, for the two cases that carry one.
    public var replyCode: Int? {
        switch self {
        case .transient(let code, _), .permanent(let code, _): code
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .transient(let code, let message): "SMTP temporary failure \(code): \(message)"
        case .permanent(let code, let message): "SMTP permanent failure \(code): \(message)"
        case .connectionFailed(let reason): "SMTP connection failed: \(reason)"
        case .timedOut(let step): "SMTP server did not answer in time (\(step))"
        case .protocolViolation(let reason): "SMTP protocol violation: \(reason)"
        case .tlsRequired: "SMTP server does not offer STARTTLS, and the configuration requires it"
        case .authenticationUnsupported: "SMTP server offers neither AUTH PLAIN nor AUTH LOGIN"
        case .invalidAddress(let reason): "invalid envelope address: \(reason)"
        }
    }

    /// The error for a reply that is not one of those expected at `step`: 4xx → transient, 5xx → permanent, anything
    /// else → protocol violation.
    static func unexpected(_ reply: SMTPReply, at step: String) -> SMTPError {
        switch reply.code {
        case 400..<500: .transient(code: reply.code, message: reply.message)
        case 500..<600: .permanent(code: reply.code, message: reply.message)
        default: .protocolViolation("unexpected reply \(reply.code) to \(step)")
        }
    }
}
