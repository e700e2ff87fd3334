/// Reads server replies from a byte stream, incrementally: bytes go in as they arrive, complete replies come out.
///
/// Lines end in CRLF or a bare LF. Each line is a three-digit code followed by a space, a `-` (more lines follow) or
/// nothing. Anything else — a line over ``maximumLineLength`` bytes, a non-digit code, a reply whose lines disagree on
/// the code, a reply over ``maximumLines`` lines — throws ``SMTPError/protocolViolation(_:)``, and the parser keeps
/// throwing after that. Memory stays bounded whatever the server sends.
public struct SMTPReplyParser: Sendable {
    /// The longest line accepted, without its line end (RFC 5321 asks for 512; servers' texts run longer).
    public static let maximumLineLength = 2048
    /// The most lines one reply may have.
    public static let maximumLines = 100

    private var line: [UInt8] = []
    /// The code of the multi-line reply in progress, and its lines so far.
    private var code: Int?
    private var lines: [String] = []
    private var failure: SMTPError?

    public init() {}

    /// True while the parser holds bytes of a reply that has not ended.
    public var hasPartialReply: Bool { !line.isEmpty || code != nil }

    /// Consumes `bytes` and returns the replies they complete, in order.
    public mutating func parse(_ bytes: some Sequence<UInt8>) throws(SMTPError) -> [SMTPReply] {
        if let failure { throw failure }
        var replies: [SMTPReply] = []
        do throws(SMTPError) {
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    if line.last == UInt8(ascii: "\r") { line.removeLast() }
                    if let reply = try finishLine() { replies.append(reply) }
                } else if line.count > Self.maximumLineLength {  // room for one CR before the LF
                    throw SMTPError.protocolViolation("reply line longer than \(Self.maximumLineLength) bytes")
                } else {
                    line.append(byte)
                }
            }
        } catch {
            failure = error
            line = []
            lines = []
            throw error
        }
        return replies
    }

    private mutating func finishLine() throws(SMTPError) -> SMTPReply? {
        defer { line.removeAll(keepingCapacity: true) }
        guard line.count <= Self.maximumLineLength else {
            throw SMTPError.protocolViolation("reply line longer than \(Self.maximumLineLength) bytes")
        }
        let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        guard line.count >= 3, line[0..<3].allSatisfy({ digits.contains($0) }) else {
            throw SMTPError.protocolViolation("reply line does not start with a three-digit code")
        }
        let separator = line.count > 3 ? line[3] : UInt8(ascii: " ")
        guard separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") else {
            throw SMTPError.protocolViolation("reply code not followed by a space or '-'")
        }
        let lineCode = line[0..<3].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        if let code, code != lineCode {
            throw SMTPError.protocolViolation("one reply mixes the codes \(code) and \(lineCode)")
        }
        guard lines.count < Self.maximumLines else {
            throw SMTPError.protocolViolation("reply longer than \(Self.maximumLines) lines")
        }
        lines.append(String(decoding: line.dropFirst(4), as: UTF8.self))
        guard separator == UInt8(ascii: " ") else {
            code = lineCode
            return nil
        }
        defer {
            code = nil
            lines = []
        }
        return SMTPReply(code: lineCode, lines: lines)
    }
}
