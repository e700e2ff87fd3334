import Foundation

/// Reads an OTLP/HTTP trace export (`ExportTraceServiceRequest` in protobuf) back into plain values, so tests can check
/// what a receiver gets. Written by hand for tests (no OTLP types are public in the packages in reach); it reads the
/// wire format generically and knows only the field numbers of the trace messages.
public struct OTLPTraceExport: Sendable {
    /// Attribute values as OTLP carries them.
    public enum Value: Sendable, Equatable {
        case string(String), bool(Bool), int(Int64), double(Double), array([Value])
    }

    public struct DecodedSpan: Sendable {
        public var traceID = ""
        public var spanID = ""
        public var parentSpanID: String?
        public var traceState: String?
        public var name = ""
        /// OTLP's numbers: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
        public var kind = 0
        public var startNanoseconds: UInt64 = 0
        public var endNanoseconds: UInt64 = 0
        public var attributes: [String: Value] = [:]
        /// How many attribute entries the span carried (more than `attributes.count` when a key came twice).
        public var attributeEntries = 0
        public var events: [(name: String, attributes: [String: Value])] = []
        public var links: [(traceID: String, spanID: String)] = []
        /// OTLP's status code (0 unset, 1 ok, 2 error) and message.
        public var statusCode = 0
        public var statusMessage = ""
    }

    public var resource: [String: Value] = [:]
    public var scopes: [String] = []
    public var spans: [DecodedSpan] = []

    public struct Malformed: Error {}

    /// Decodes a request body; throws on anything that is not well-formed protobuf of the expected shape.
    public init(_ bytes: some Collection<UInt8>) throws {
        for field in try Self.fields(Array(bytes)) where field.number == 1 {  // resource_spans
            for part in try Self.fields(try field.message()) {
                switch part.number {
                case 1:  // resource
                    for attribute in try Self.fields(try part.message()) where attribute.number == 1 {
                        let (key, value) = try Self.keyValue(try attribute.message())
                        resource[key] = value
                    }
                case 2:  // scope_spans
                    for scopePart in try Self.fields(try part.message()) {
                        if scopePart.number == 1 {
                            for scopeField in try Self.fields(try scopePart.message()) where scopeField.number == 1 {
                                scopes.append(try scopeField.string())
                            }
                        } else if scopePart.number == 2 {
                            spans.append(try Self.span(try scopePart.message()))
                        }
                    }
                default: break
                }
            }
        }
    }

    private static func span(_ bytes: [UInt8]) throws -> DecodedSpan {
        var span = DecodedSpan()
        for field in try fields(bytes) {
            switch field.number {
            case 1: span.traceID = try field.hex()
            case 2: span.spanID = try field.hex()
            case 3: span.traceState = try field.string()
            case 4: span.parentSpanID = try field.hex()
            case 5: span.name = try field.string()
            case 6: span.kind = Int(try field.varint())
            case 7: span.startNanoseconds = try field.fixed64()
            case 8: span.endNanoseconds = try field.fixed64()
            case 9:
                let (key, value) = try keyValue(try field.message())
                span.attributes[key] = value
                span.attributeEntries += 1
            case 11:
                var name = ""
                var attributes: [String: Value] = [:]
                for eventField in try fields(try field.message()) {
                    if eventField.number == 2 { name = try eventField.string() }
                    if eventField.number == 3 {
                        let (key, value) = try keyValue(try eventField.message())
                        attributes[key] = value
                    }
                }
                span.events.append((name, attributes))
            case 13:
                var link = (traceID: "", spanID: "")
                for linkField in try fields(try field.message()) {
                    if linkField.number == 1 { link.traceID = try linkField.hex() }
                    if linkField.number == 2 { link.spanID = try linkField.hex() }
                }
                span.links.append(link)
            case 15:
                for statusField in try fields(try field.message()) {
                    if statusField.number == 2 { span.statusMessage = try statusField.string() }
                    if statusField.number == 3 { span.statusCode = Int(try statusField.varint()) }
                }
            default: break
            }
        }
        return span
    }

    private static func keyValue(_ bytes: [UInt8]) throws -> (String, Value) {
        var key = ""
        var value = Value.string("")
        for field in try fields(bytes) {
            if field.number == 1 { key = try field.string() }
            if field.number == 2 { value = try anyValue(try field.message()) }
        }
        return (key, value)
    }

    private static func anyValue(_ bytes: [UInt8]) throws -> Value {
        for field in try fields(bytes) {
            switch field.number {
            case 1: return .string(try field.string())
            case 2: return .bool(try field.varint() != 0)
            case 3: return .int(Int64(bitPattern: try field.varint()))
            case 4: return .double(Double(bitPattern: try field.fixed64()))
            case 5: return .array(try fields(try field.message()).filter { $0.number == 1 }.map { try anyValue(try $0.message()) })
            default: continue
            }
        }
        return .string("")
    }

    /// One field of a message: its number and its raw value.
    struct Field {
        enum Raw { case varint(UInt64), fixed64(UInt64), bytes([UInt8]), fixed32(UInt32) }
        let number: UInt64
        let raw: Raw

        func varint() throws -> UInt64 {
            guard case .varint(let value) = raw else { throw Malformed() }
            return value
        }
        func fixed64() throws -> UInt64 {
            guard case .fixed64(let value) = raw else { throw Malformed() }
            return value
        }
        func message() throws -> [UInt8] {
            guard case .bytes(let value) = raw else { throw Malformed() }
            return value
        }
        func string() throws -> String {
            guard let string = String(validating: try message(), as: UTF8.self) else { throw Malformed() }
            return string
        }
        func hex() throws -> String { try message().map { String(format: "%02x", $0) }.joined() }
    }

    static func fields(_ bytes: [UInt8]) throws -> [Field] {
        var index = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < bytes.count, shift < 64 else { throw Malformed() }
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
        }
        func take(_ count: Int) throws -> [UInt8] {
            guard count >= 0, index + count <= bytes.count else { throw Malformed() }
            defer { index += count }
            return Array(bytes[index..<index + count])
        }
        func littleEndian(_ count: Int) throws -> UInt64 {
            try take(count).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        var fields: [Field] = []
        while index < bytes.count {
            let key = try varint()
            guard key >> 3 > 0 else { throw Malformed() }
            switch key & 7 {
            case 0: fields.append(Field(number: key >> 3, raw: .varint(try varint())))
            case 1: fields.append(Field(number: key >> 3, raw: .fixed64(try littleEndian(8))))
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.count) else { throw Malformed() }
                fields.append(Field(number: key >> 3, raw: .bytes(try take(Int(length)))))
            case 5: fields.append(Field(number: key >> 3, raw: .fixed32(UInt32(try littleEndian(4)))))
            default: throw Malformed()
            }
        }
        return fields
    }
}
