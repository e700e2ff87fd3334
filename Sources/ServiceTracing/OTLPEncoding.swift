import ServiceCore
import Tracing

/// Protocol-buffers wire format for the few OTLP messages a trace export needs, written by hand: the generated types
/// in reach (swift-otel's) are internal to that package, and a hand encoder writes a batch in one pass into one array.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    private mutating func tag(_ field: UInt64, _ wireType: UInt64) { varint(field << 3 | wireType) }

    mutating func uint64(_ field: UInt64, _ value: UInt64) {
        tag(field, 0)
        varint(value)
    }

    mutating func int64(_ field: UInt64, _ value: Int64) { uint64(field, UInt64(bitPattern: value)) }

    mutating func bool(_ field: UInt64, _ value: Bool) { uint64(field, value ? 1 : 0) }

    mutating func fixed64(_ field: UInt64, _ value: UInt64) {
        tag(field, 1)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func double(_ field: UInt64, _ value: Double) { fixed64(field, value.bitPattern) }

    /// A span id as `bytes`: 8 bytes, most significant first.
    mutating func id(_ field: UInt64, _ word: UInt64) {
        tag(field, 2)
        varint(8)
        withUnsafeBytes(of: word.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// A trace id as `bytes`: 16 bytes, most significant first.
    mutating func id(_ field: UInt64, _ high: UInt64, _ low: UInt64) {
        tag(field, 2)
        varint(16)
        withUnsafeBytes(of: high.bigEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: low.bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ field: UInt64, _ value: String) {
        tag(field, 2)
        var value = value
        value.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// A nested message: its fields are written by `body`, then its length is put in front of them.
    mutating func message(_ field: UInt64, _ body: (inout ProtobufWriter) -> Void) {
        tag(field, 2)
        let start = bytes.count
        body(&self)
        // Room for the length's varint is made in front of the fields, then filled in (no buffer of its own).
        var length = UInt64(bytes.count - start)
        var size = 1
        while length >> (7 * size) != 0 { size += 1 }
        bytes.insert(contentsOf: repeatElement(0, count: size), at: start)
        for index in start..<start + size {
            bytes[index] = UInt8(truncatingIfNeeded: length) | (index < start + size - 1 ? 0x80 : 0)
            length >>= 7
        }
    }
}

/// OTLP/HTTP's `ExportTraceServiceRequest` (opentelemetry-proto, `collector/trace/v1`) for one resource and one
/// instrumentation scope.
enum OTLPTraceEncoder {
    static func encode(_ spans: some Collection<FinishedSpan>, resource: [(String, String)], scope: String) -> [UInt8] {
        var writer = ProtobufWriter(capacity: 256 + spans.count * 256)
        writer.message(1) { resourceSpans in  // ExportTraceServiceRequest.resource_spans
            resourceSpans.message(1) { resourceMessage in  // ResourceSpans.resource
                for (key, value) in resource {
                    resourceMessage.message(1) { keyValue(&$0, key, .string(value)) }  // Resource.attributes
                }
            }
            resourceSpans.message(2) { scopeSpans in  // ResourceSpans.scope_spans
                scopeSpans.message(1) { $0.string(1, scope) }  // ScopeSpans.scope { name }
                for span in spans {
                    scopeSpans.message(2) { encode(span, into: &$0) }  // ScopeSpans.spans
                }
            }
        }
        return writer.bytes
    }

    static func encode(_ span: FinishedSpan, into writer: inout ProtobufWriter) {
        writer.id(1, span.context.traceID.high, span.context.traceID.low)
        writer.id(2, span.context.spanID.value)
        if let traceState = span.context.traceState { writer.string(3, traceState) }
        if let parent = span.parentSpanID { writer.id(4, parent.value) }
        writer.string(5, span.name)
        writer.uint64(6, kindNumber(span.kind))
        writer.fixed64(7, span.startNanoseconds)
        writer.fixed64(8, span.endNanoseconds)
        // An HTTP summary's attributes replace the same keys set on the span.
        span.summary?.forEach { key, value in writer.message(9) { keyValue(&$0, key, value) } }
        span.attributes.forEach { key, value in
            if span.summary?.holds(key) != true { writer.message(9) { keyValue(&$0, key, value) } }
        }
        if span.dropped.attributes > 0 { writer.uint64(10, UInt64(span.dropped.attributes)) }
        for event in span.events {
            writer.message(11) { eventMessage in
                eventMessage.fixed64(1, event.nanosecondsSinceEpoch)
                eventMessage.string(2, event.name)
                event.attributes.forEach { key, value in eventMessage.message(3) { keyValue(&$0, key, value) } }
            }
        }
        if span.dropped.events > 0 { writer.uint64(12, UInt64(span.dropped.events)) }
        for (context, attributes) in span.links {
            writer.message(13) { link in
                link.id(1, context.traceID.high, context.traceID.low)
                link.id(2, context.spanID.value)
                if let traceState = context.traceState { link.string(3, traceState) }
                attributes.forEach { key, value in link.message(4) { keyValue(&$0, key, value) } }
            }
        }
        if span.dropped.links > 0 { writer.uint64(14, UInt64(span.dropped.links)) }
        if let status = span.status {
            writer.message(15) { statusMessage in
                if let message = status.message { statusMessage.string(2, message) }
                statusMessage.uint64(3, status.code == .ok ? 1 : 2)
            }
        }
    }

    /// OTLP's `SpanKind` numbers.
    static func kindNumber(_ kind: SpanKind) -> UInt64 {
        switch kind {
        case .internal: 1
        case .server: 2
        case .client: 3
        case .producer: 4
        case .consumer: 5
        }
    }

    private static func keyValue(_ writer: inout ProtobufWriter, _ key: String, _ value: SpanAttribute) {
        writer.string(1, key)
        writer.message(2) { anyValue(&$0, value) }
    }

    /// OTLP's `AnyValue` for an attribute (arrays as `ArrayValue`, anything string-convertible as its description).
    private static func anyValue(_ writer: inout ProtobufWriter, _ value: SpanAttribute) {
        func array<T>(_ values: [T], _ element: @escaping (inout ProtobufWriter, T) -> Void) {
            writer.message(5) { arrayValue in
                for value in values { arrayValue.message(1) { element(&$0, value) } }
            }
        }
        switch value {
        case .string(let string): writer.string(1, string)
        case .bool(let bool): writer.bool(2, bool)
        case .int32(let int): writer.int64(3, Int64(int))
        case .int64(let int): writer.int64(3, int)
        case .double(let double): writer.double(4, double)
        case .stringArray(let strings): array(strings) { $0.string(1, $1) }
        case .boolArray(let bools): array(bools) { $0.bool(2, $1) }
        case .int32Array(let ints): array(ints) { $0.int64(3, Int64($1)) }
        case .int64Array(let ints): array(ints) { $0.int64(3, $1) }
        case .doubleArray(let doubles): array(doubles) { $0.double(4, $1) }
        case .stringConvertible(let convertible): writer.string(1, convertible.description)
        case .stringConvertibleArray(let convertibles): array(convertibles) { $0.string(1, $1.description) }
        default: writer.string(1, "")
        }
    }
}
