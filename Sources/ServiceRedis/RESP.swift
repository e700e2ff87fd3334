import NIOCore

// The Redis client of this toolkit is written by hand on SwiftNIO: no Swift Redis client is available to the project
// (the package mirror has none). This file is the wire protocol, RESP2 and RESP3.

/// One reply value of the Redis protocol (RESP3, which includes RESP2's five types).
public enum RESPValue: Sendable, Equatable {
    case simpleString(String)
    /// An error reply (`-ERR …`, `!` blob errors): its text, e.g. `WRONGTYPE Operation against a key…`.
    case error(String)
    case integer(Int64)
    case bulkString(ByteBuffer)
    /// RESP3 `_`, and RESP2's null bulk string and null array.
    case null
    case double(Double)
    case boolean(Bool)
    /// RESP3 big number, as its decimal text.
    case bigNumber(String)
    /// RESP3 verbatim string: its format (`txt`, `mkd`) and text.
    case verbatim(format: String, text: String)
    case array([RESPValue])
    /// RESP3 map, as its pairs in the order received.
    case map([(RESPValue, RESPValue)])
    case set([RESPValue])
    /// RESP3 out-of-band push (pub/sub messages).
    case push([RESPValue])

    public static func == (lhs: RESPValue, rhs: RESPValue) -> Bool {
        switch (lhs, rhs) {
        case (.simpleString(let a), .simpleString(let b)), (.error(let a), .error(let b)), (.bigNumber(let a), .bigNumber(let b)): a == b
        case (.integer(let a), .integer(let b)): a == b
        case (.bulkString(let a), .bulkString(let b)): a == b
        case (.null, .null): true
        case (.double(let a), .double(let b)): a == b || (a.isNaN && b.isNaN)
        case (.boolean(let a), .boolean(let b)): a == b
        case (.verbatim(let f, let t), .verbatim(let g, let u)): f == g && t == u
        case (.array(let a), .array(let b)), (.set(let a), .set(let b)), (.push(let a), .push(let b)): a == b
        case (.map(let a), .map(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The value as text: simple, bulk and verbatim strings, numbers; nil for the rest.
    public var string: String? {
        switch self {
        case .simpleString(let text), .bigNumber(let text): text
        case .bulkString(let buffer): String(buffer: buffer)
        case .verbatim(_, let text): text
        case .integer(let value): String(value)
        case .double(let value): String(value)
        default: nil
        }
    }

    /// The value as an integer: integers, and strings that hold one.
    public var int: Int? {
        switch self {
        case .integer(let value): Int(value)
        default: string.flatMap { Int($0) }
        }
    }

    /// The elements of an array, set or push; a map's keys and values in turn.
    public var elements: [RESPValue]? {
        switch self {
        case .array(let values), .set(let values), .push(let values): values
        case .map(let pairs): pairs.flatMap { [$0.0, $0.1] }
        default: nil
        }
    }
}

/// A malformed reply: the connection cannot be trusted after it and is closed.
public struct RESPProtocolError: Error, CustomStringConvertible {
    public var description: String
}

/// Reads RESP values off a byte stream.
struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = RESPValue

    /// Deeper nesting than any reply of Redis's own (a hostile or broken peer could otherwise exhaust the stack).
    static let maximumDepth = 64
    /// A bulk string larger than Redis allows (512 MB) is a broken stream.
    static let maximumBulkLength = 512 * 1024 * 1024

    mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        var copy = buffer
        guard let value = try Self.parse(&copy, depth: 0) else { return nil }
        buffer = copy
        return value
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try decode(buffer: &buffer)
    }

    /// Parses one value, moving the reader index past it; nil (the index anywhere) when the bytes are not all there yet.
    static func parse(_ buffer: inout ByteBuffer, depth: Int) throws -> RESPValue? {
        guard depth < maximumDepth else { throw RESPProtocolError(description: "nesting deeper than \(maximumDepth)") }
        guard let type = buffer.readInteger(as: UInt8.self), let line = try readLine(&buffer) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simpleString(line)
        case UInt8(ascii: "-"): return .error(line)
        case UInt8(ascii: ":"):
            guard let value = Int64(line) else { throw RESPProtocolError(description: "bad integer '\(line)'") }
            return .integer(value)
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = try count(line)
            if length < 0 { return .null }
            guard length <= maximumBulkLength else { throw RESPProtocolError(description: "bulk of \(length) bytes") }
            guard buffer.readableBytes >= length + 2, let bytes = buffer.readSlice(length: length) else { return nil }
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw RESPProtocolError(description: "bulk without CRLF") }
            switch type {
            case UInt8(ascii: "!"): return .error(String(buffer: bytes))
            case UInt8(ascii: "="):
                let text = String(buffer: bytes)
                guard text.count >= 4 else { throw RESPProtocolError(description: "verbatim string without a format") }
                return .verbatim(format: String(text.prefix(3)), text: String(text.dropFirst(4)))
            default: return .bulkString(bytes)
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let length = try count(line)
            if length < 0 { return .null }
            var values: [RESPValue] = []
            values.reserveCapacity(min(length, 1024))
            for _ in 0..<length {
                guard let value = try parse(&buffer, depth: depth + 1) else { return nil }
                values.append(value)
            }
            return type == UInt8(ascii: "*") ? .array(values) : type == UInt8(ascii: "~") ? .set(values) : .push(values)
        case UInt8(ascii: "%"), UInt8(ascii: "|"):
            let length = try count(line)
            var pairs: [(RESPValue, RESPValue)] = []
            pairs.reserveCapacity(min(length, 1024))
            for _ in 0..<max(length, 0) {
                guard let key = try parse(&buffer, depth: depth + 1), let value = try parse(&buffer, depth: depth + 1) else { return nil }
                pairs.append((key, value))
            }
            // An attribute annotates the reply that follows it: that reply is the value.
            if type == UInt8(ascii: "|") { return try parse(&buffer, depth: depth) }
            return .map(pairs)
        case UInt8(ascii: "_"): return .null
        case UInt8(ascii: ","):
            switch line {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan": return .double(.nan)
            default:
                guard let value = Double(line) else { throw RESPProtocolError(description: "bad double '\(line)'") }
                return .double(value)
            }
        case UInt8(ascii: "#"):
            guard line == "t" || line == "f" else { throw RESPProtocolError(description: "bad boolean '\(line)'") }
            return .boolean(line == "t")
        case UInt8(ascii: "("): return .bigNumber(line)
        default:
            throw RESPProtocolError(description: "unknown type byte \(type)")
        }
    }

    private static func count(_ line: String) throws -> Int {
        guard let value = Int(line), value >= -1 else { throw RESPProtocolError(description: "bad length '\(line)'") }
        return value
    }

    /// The text up to CRLF (consumed with it); nil when no CRLF has arrived yet.
    private static func readLine(_ buffer: inout ByteBuffer) throws -> String? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")), cr + 1 < view.endIndex else { return nil }
        guard view[cr + 1] == UInt8(ascii: "\n") else { throw RESPProtocolError(description: "a line with CR but no LF") }
        let line = buffer.readString(length: cr - view.startIndex)
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }
}

/// One argument of a command: bytes on the wire (a bulk string).
public struct RedisArgument: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public var bytes: ByteBuffer

    public init(_ string: String) { bytes = ByteBuffer(string: string) }
    public init(_ bytes: ByteBuffer) { self.bytes = bytes }
    public init<I: BinaryInteger>(_ value: I) { bytes = ByteBuffer(string: String(value)) }
    public init(_ value: Double) { bytes = ByteBuffer(string: String(value)) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(value) }
}

extension ByteBuffer {
    /// Writes a command as RESP: an array of bulk strings.
    mutating func writeRedisCommand(_ command: [RedisArgument]) {
        writeStaticString("*")
        writeString(String(command.count))
        writeStaticString("\r\n")
        for argument in command {
            writeStaticString("$")
            writeString(String(argument.bytes.readableBytes))
            writeStaticString("\r\n")
            writeImmutableBuffer(argument.bytes)
            writeStaticString("\r\n")
        }
    }
}
