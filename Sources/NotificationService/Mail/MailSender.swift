import Foundation

/// One e-mail to send.
public struct MailMessage: Sendable, Equatable {
    public var id: String
    public var fromName: String
    public var fromAddress: String
    public var toName: String
    public var toAddress: String
    public var subject: String
    /// Plain text.
    public var body: String
    public var date: Date

    public init(id: String, fromName: String, fromAddress: String, toName: String, toAddress: String, subject: String, body: String, date: Date) {
        self.id = id
        self.fromName = fromName
        self.fromAddress = fromAddress
        self.toName = toName
        self.toAddress = toAddress
        self.subject = subject
        self.body = body
        self.date = date
    }
}

/// Delivers mail. Sending the same message (same id) again is allowed to deliver it again (SMTP has no idempotency
/// key); the id is the message's `Message-ID`, so a receiver can recognise the repeat.
public protocol MailSender: Sendable {
    func send(_ message: MailMessage) async throws
}

/// The default sender: writes each message as an RFC 5322 `.eml` file named by its id into a folder (a stand-in for an
/// SMTP relay that any mail client can open). A file is written whole under a temporary name and then renamed, so a
/// reader never sees half a message, and sending the same id again replaces it with the same content.
public struct FileMailSender: MailSender {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public func send(_ message: MailMessage) async throws {
        // Mail holds names and addresses: the folder and the files are the owner's only.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let name = message.id.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        let path = (directory as NSString).appendingPathComponent("\(name).eml")
        let temporary = (directory as NSString).appendingPathComponent(".\(name).\(UUID().uuidString).tmp")
        guard FileManager.default.createFile(atPath: temporary, contents: Data(RFC5322.render(message).utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary])
        }
        if rename(temporary, path) != 0 {
            let code = errno
            try? FileManager.default.removeItem(atPath: temporary)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "rename failed: \(String(cString: strerror(code)))"])
        }
    }
}

/// Rendering of a plain-text message in Internet Message Format (RFC 5322) with MIME (RFC 2045) and encoded words for
/// non-ASCII header text (RFC 2047). Written by hand: no mail-composition package is in the project's dependency set,
/// and the format needed here is small.
enum RFC5322 {
    static func render(_ message: MailMessage) -> String {
        let headers = [
            "From: \(mailbox(message.fromName, message.fromAddress))",
            "To: \(mailbox(message.toName, message.toAddress))",
            "Subject: \(encodedWord(message.subject))",
            "Date: \(date(message.date))",
            "Message-ID: <\(headerSafe(message.id))@\(domain(of: message.fromAddress))>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        // Lines end in CRLF; a body line that is a lone "." stays as it is (no SMTP dot-stuffing in a file).
        let body = message.body.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
            .joined(separator: "\r\n")
        return headers.joined(separator: "\r\n") + "\r\n\r\n" + body + "\r\n"
    }

    /// `"Name" <address>`, the name quoted or encoded; CR, LF and other controls never reach a header.
    static func mailbox(_ name: String, _ address: String) -> String {
        let address = headerSafe(address).filter { $0 != "<" && $0 != ">" && $0 != " " }
        let name = headerSafe(name)
        guard !name.isEmpty else { return "<\(address)>" }
        if name.allSatisfy({ $0.isASCII }) {
            let quoted = name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(quoted)\" <\(address)>"
        }
        return "\(encodedWord(name)) <\(address)>"
    }

    /// Header text as is when it is printable ASCII, else one RFC 2047 encoded word per (up to) 45 bytes of UTF-8.
    static func encodedWord(_ text: String) -> String {
        let text = headerSafe(text)
        if text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) { return text }
        var words: [String] = []
        var chunk = ""
        for character in text {
            if (chunk + String(character)).utf8.count > 45 {
                words.append(chunk)
                chunk = ""
            }
            chunk.append(character)
        }
        if !chunk.isEmpty { words.append(chunk) }
        return words.map { "=?UTF-8?B?\(Data($0.utf8).base64EncodedString())?=" }.joined(separator: "\r\n ")
    }

    /// Removes control characters (CR and LF among them), so nothing can add a header.
    static func headerSafe(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0.properties.generalCategory != .control })
    }

    static func domain(of address: String) -> String {
        address.split(separator: "@").last.map { headerSafe(String($0)) } ?? "localhost"
    }

    /// RFC 5322 date-time in UTC, e.g. `Wed, 25 Nov 2026 12:00:00 +0000`.
    static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}
