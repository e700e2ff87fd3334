import ServiceContextModule

/// A W3C trace id: 16 bytes, never all zero.
public struct TraceID: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// 32 lowercase hex digits, as in `traceparent`.
    public var hex: String { Hex.string(high, low) }
}

/// A W3C span (parent) id: 8 bytes, never all zero.
public struct SpanID: Hashable, Sendable {
    public var value: UInt64

    public init(_ value: UInt64) {
        self.value = value
    }

    /// 16 lowercase hex digits, as in `traceparent`.
    public var hex: String { Hex.string(value) }
}

/// The identity of a span as it travels: in a `ServiceContext` within a process, in `traceparent`/`tracestate` between
/// processes (W3C Trace Context level 1).
public struct TraceSpanContext: Hashable, Sendable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// Whether the trace is sampled (the `sampled` bit of the trace flags): its spans are recorded and exported.
    public var sampled: Bool
    /// The vendor-specific `tracestate`, carried along unchanged.
    public var traceState: String?
    /// Whether this context came from another process (it is a parent only, never recorded here).
    public var isRemote: Bool

    public init(traceID: TraceID, spanID: SpanID, sampled: Bool, traceState: String? = nil, isRemote: Bool = false) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
        self.traceState = traceState
        self.isRemote = isRemote
    }

    /// `00-<trace id>-<span id>-<flags>`, written in one pass (this is on every forwarded request's path).
    public var traceparent: String {
        String(unsafeUninitializedCapacity: 55) { buffer in
            buffer[0] = UInt8(ascii: "0")
            buffer[1] = UInt8(ascii: "0")
            buffer[2] = UInt8(ascii: "-")
            Hex.write(traceID.high, into: buffer, at: 3)
            Hex.write(traceID.low, into: buffer, at: 19)
            buffer[35] = UInt8(ascii: "-")
            Hex.write(spanID.value, into: buffer, at: 36)
            buffer[52] = UInt8(ascii: "-")
            buffer[53] = UInt8(ascii: "0")
            buffer[54] = sampled ? UInt8(ascii: "1") : UInt8(ascii: "0")
            return 55
        }
    }

    /// Parses a `traceparent` header as W3C requires: version `00` exactly as specified, a later version by its first
    /// four fields; lowercase hex only; no all-zero ids. Anything else is nil (the trace restarts).
    public init?(traceparent: String, traceState: String? = nil) {
        let utf8 = Array(traceparent.utf8)
        guard utf8.count >= 55, utf8[2] == UInt8(ascii: "-"), utf8[35] == UInt8(ascii: "-"), utf8[52] == UInt8(ascii: "-"),
            let version = Hex.parse(utf8[0..<2]), version != 0xff,
            version != 0 || utf8.count == 55,
            version == 0 || utf8.count == 55 || utf8[55] == UInt8(ascii: "-"),
            let high = Hex.parse(utf8[3..<19]), let low = Hex.parse(utf8[19..<35]),
            let span = Hex.parse(utf8[36..<52]), let flags = Hex.parse(utf8[53..<55]),
            high != 0 || low != 0, span != 0
        else { return nil }
        self.init(
            traceID: TraceID(high: high, low: low), spanID: SpanID(span), sampled: flags & 1 == 1,
            traceState: traceState.flatMap { $0.isEmpty || $0.utf8.count > 512 ? nil : $0 }, isRemote: true
        )
    }
}

extension ServiceContext {
    /// The current span's identity, set by `OTLPTracer` (or extracted from `traceparent`).
    public var traceSpanContext: TraceSpanContext? {
        get { self[TraceSpanContextKey.self] }
        set { self[TraceSpanContextKey.self] = newValue }
    }
}

private enum TraceSpanContextKey: ServiceContextKey {
    typealias Value = TraceSpanContext
    static var nameOverride: String? { "trace-span-context" }
}

/// Lowercase hex for W3C ids, written by hand: formatting through `String(format:)` costs microseconds per id.
enum Hex {
    static func string(_ values: UInt64...) -> String {
        String(unsafeUninitializedCapacity: values.count * 16) { buffer in
            for (index, value) in values.enumerated() { write(value, into: buffer, at: index * 16) }
            return values.count * 16
        }
    }

    /// `value` as 16 hex digits into `buffer` from `offset`.
    static func write(_ value: UInt64, into buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) {
        for index in 0..<16 {
            let nibble = Int((value >> UInt64(60 - 4 * index)) & 0xf)
            buffer[offset + index] = nibble < 10 ? UInt8(ascii: "0") + UInt8(nibble) : UInt8(ascii: "a") + UInt8(nibble - 10)
        }
    }

    /// Up to 16 lowercase hex digits as a number; nil for anything else (upper case included, as W3C requires).
    static func parse(_ digits: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for digit in digits {
            let nibble: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = digit - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }
}
