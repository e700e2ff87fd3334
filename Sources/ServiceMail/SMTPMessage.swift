/// What the client does to a message and its envelope before they go on the wire: the DATA transparency rules and the
/// envelope address check that keeps an address from smuggling in commands.
public enum SMTPMessage {
    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let dot = UInt8(ascii: ".")

    /// The longest envelope address accepted, in bytes.
    public static let maximumAddressLength = 254

    /// `body` ready to follow DATA: every line end (CRLF, lone CR, lone LF) becomes CRLF, a line starting with "." gets
    /// another "." in front (RFC 5321 §4.5.2), and non-empty data ends with CRLF. The caller then sends ".\r\n".
    public static func dotStuffed(_ body: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(body.utf8.count + 64)
        var atLineStart = true
        var afterCR = false
        for byte in body.utf8 {
            if byte == lf && afterCR {  // the LF of a CRLF whose CR already ended the line
                afterCR = false
                continue
            }
            afterCR = byte == cr
            if byte == cr || byte == lf {
                output += [cr, lf]
                atLineStart = true
                continue
            }
            if atLineStart && byte == dot { output.append(dot) }
            atLineStart = false
            output.append(byte)
        }
        if !atLineStart { output += [cr, lf] }
        return String(decoding: output, as: UTF8.self)
    }

    /// Throws ``SMTPError/invalidAddress(_:)`` unless `address` can go between the angle brackets of `MAIL FROM:<…>` or
    /// `RCPT TO:<…>`: non-empty, at most ``maximumAddressLength`` bytes, exactly one `@` with something on each side,
    /// and no control character (CR, LF and NUL included), space, `<` or `>`. The message never repeats the address,
    /// so it is safe to log.
    public static func validateAddress(_ address: String) throws(SMTPError) {
        let bytes = Array(address.utf8)
        guard !bytes.isEmpty else { throw SMTPError.invalidAddress("empty address") }
        guard bytes.count <= maximumAddressLength else {
            throw SMTPError.invalidAddress("address longer than \(maximumAddressLength) bytes")
        }
        let forbidden: (UInt8) -> Bool = { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") }
        guard !bytes.contains(where: forbidden) else {
            throw SMTPError.invalidAddress("address contains a control character, a space, '<' or '>'")
        }
        let parts = bytes.split(separator: UInt8(ascii: "@"), omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw SMTPError.invalidAddress("address needs exactly one '@' between a local part and a domain")
        }
    }
}
