import Foundation

/// Where and how to send mail, read from one URL:
/// `smtp[s]://[user[:password]@]host[:port][?starttls=off|opportunistic|required&ca=PATH&verify=full|none&helo=NAME`
/// `&timeout_ms=N&connect_timeout_ms=N]`.
///
/// `smtp://` starts in plain text (port 25) and upgrades with STARTTLS when the server offers it (`starttls=required`:
/// fail when it does not; `off`: never). `smtps://` speaks TLS from the first byte (port 465). The user info, percent-
/// decoded, is the AUTH credentials. `description` and ``redacted`` never show the password.
public struct SMTPConfiguration: Sendable, Equatable {
    /// How the connection is protected.
    public enum Security: Sendable, Equatable {
        /// Plain text throughout (`smtp://…?starttls=off`).
        case plain
        /// Plain text upgraded with STARTTLS when offered; when it is not, `required` fails the send.
        case startTLS(required: Bool)
        /// TLS from the first byte (`smtps://`).
        case implicitTLS
    }

    /// Whether the server's certificate is checked (`verify=`). `none` is for tests and development only.
    public enum Verification: String, Sendable, Equatable {
        case full
        case none
    }

    /// A URL that cannot be used, and why (the password is never part of the message).
    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public var host: String
    public var port: Int
    public var security: Security
    public var username: String?
    public var password: String?
    /// A PEM file of trust roots used instead of the system's (`ca=`).
    public var caFile: String?
    public var verify: Verification
    /// The name sent with EHLO/HELO (`helo=`, default `localhost`).
    public var heloName: String
    /// How long each reply may take (`timeout_ms=`, default 30 s).
    public var commandTimeout: Duration
    /// How long connecting may take (`connect_timeout_ms=`, default 10 s).
    public var connectTimeout: Duration

    /// Parses `url`; throws ``Invalid`` for a scheme other than smtp/smtps, a missing host, a bad port, an unknown query
    /// parameter or value, or a CR/LF (or other control character) anywhere, encoded or not.
    public init(url: String) throws(Invalid) {
        func invalid(_ reason: String) -> Invalid { Invalid(description: "SMTP URL: \(reason)") }
        func isDigits(_ text: Substring) -> Bool { !text.isEmpty && text.allSatisfy { $0.isASCII && $0.isWholeNumber } }
        func decoded(_ text: Substring, _ what: String) throws(Invalid) -> String {
            guard let value = String(text).removingPercentEncoding else { throw invalid("bad percent-encoding in the \(what)") }
            guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw invalid("control character in the \(what)")
            }
            return value
        }
        guard !url.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw invalid("contains a control character (CR, LF…)")
        }
        guard let schemeEnd = url.range(of: "://") else { throw invalid("expected smtp://… or smtps://…") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "smtp" || scheme == "smtps" else { throw invalid("unsupported scheme (smtp or smtps)") }
        var rest = url[schemeEnd.upperBound...]
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/"), !rest.contains("#") else { throw invalid("no path or fragment expected after the host") }

        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                username = try decoded(userInfo[..<colon], "user name")
                password = try decoded(userInfo[userInfo.index(after: colon)...], "password")
            } else {
                username = try decoded(userInfo, "user name")
            }
            guard username?.isEmpty == false else { throw invalid("empty user name") }
        }

        var portText: Substring?
        if hostPort.hasPrefix("[") {  // an IPv6 literal
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated '[' in the host") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after the host") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = String(hostPort)
        }
        guard !host.isEmpty else { throw invalid("no host") }
        guard !host.contains(where: { $0 == " " || $0 == "%" || $0 == "@" || $0 == "[" || $0 == "]" }) else {
            throw invalid("malformed host")
        }
        if let portText {
            guard isDigits(portText), let port = Int(portText), (1...65535).contains(port) else {
                throw invalid("port must be 1-65535")
            }
            self.port = port
        } else {
            port = scheme == "smtps" ? 465 : 25
        }

        security = scheme == "smtps" ? .implicitTLS : .startTLS(required: false)
        verify = .full
        heloName = "localhost"
        commandTimeout = .milliseconds(30_000)
        connectTimeout = .milliseconds(10_000)
        var seen: Set<String> = []
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try decoded(parts[0], "query")
            // Named in messages only when it looks like a parameter name: a mistyped URL may have put part of the
            // password there.
            let name = key.allSatisfy { $0.isASCII && ($0.isLowercase || $0 == "_") } ? "'\(key)'" : "a parameter"
            let value = try decoded(parts.count > 1 ? parts[1] : "", "value of \(name)")
            guard seen.insert(key).inserted else { throw invalid("\(name) given twice") }
            switch key {
            case "starttls":
                guard scheme == "smtp" else { throw invalid("starttls applies to smtp:// only (smtps:// is TLS throughout)") }
                switch value {
                case "off": security = .plain
                case "opportunistic": security = .startTLS(required: false)
                case "required": security = .startTLS(required: true)
                default: throw invalid("starttls must be off, opportunistic or required")
                }
            case "ca":
                guard !value.isEmpty else { throw invalid("ca needs a file path") }
                caFile = value
            case "verify":
                guard let verification = Verification(rawValue: value) else { throw invalid("verify must be full or none") }
                verify = verification
            case "helo":
                let allowed = value.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.[]:".contains($0)) }
                guard !value.isEmpty, value.utf8.count <= 255, allowed else { throw invalid("helo must be a host name") }
                heloName = value
            case "timeout_ms", "connect_timeout_ms":
                guard isDigits(value[...]), let milliseconds = Int(value), (1...86_400_000).contains(milliseconds) else {
                    throw invalid("\(name) must be a whole number of milliseconds from 1 to 86400000")
                }
                if key == "timeout_ms" { commandTimeout = .milliseconds(milliseconds) } else { connectTimeout = .milliseconds(milliseconds) }
            default:
                throw invalid("unknown parameter \(name)")
            }
        }
    }

    /// The URL with the password masked and the query left out, for logs: `smtp://user:***@host:port`.
    public var redacted: String {
        let scheme = security == .implicitTLS ? "smtps" : "smtp"
        let credentials = username.map { $0 + (password == nil ? "" : ":***") + "@" } ?? ""
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(credentials)\(hostText):\(port)"
    }
}

extension SMTPConfiguration: CustomStringConvertible, CustomReflectable {
    public var description: String { redacted }
    /// Keeps `dump` and debuggers from showing the password.
    public var customMirror: Mirror { Mirror(self, children: ["url": redacted]) }
}
