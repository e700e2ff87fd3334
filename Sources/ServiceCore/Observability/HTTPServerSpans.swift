import Instrumentation
import NIOHTTP1
import ServiceContextModule
import Tracing

/// The server span of one proxied HTTP request, cut down to what a proxy does with it: send its trace context on, and
/// end it with the request's HTTP attributes.
public protocol HTTPServerSpan: AnyObject {
    /// The span's trace context as headers (W3C: `traceparent`, and `tracestate` when the trace has one). Sent on even
    /// for an unsampled trace, so the services behind the proxy follow the decision.
    var traceHeaders: [(String, String)] { get }
    /// Records the request's HTTP attributes (an error status from 500 up) and ends the span.
    func end(_ summary: HTTPSpanSummary)
}

/// What a proxy's server span records when it ends (OpenTelemetry's HTTP semantic conventions).
public struct HTTPSpanSummary: Sendable, Equatable {
    /// `http.request.method`
    public var method: String
    /// `http.response.status_code`, when there was a response.
    public var statusCode: Int?
    /// `server.address`: the upstream instance (`host:port`) the request went to.
    public var serverAddress: String?
    /// `peer.service`: the upstream service's name.
    public var peerService: String?

    public init(method: String, statusCode: Int? = nil, serverAddress: String? = nil, peerService: String? = nil) {
        self.method = method
        self.statusCode = statusCode
        self.serverAddress = serverAddress
        self.peerService = peerService
    }

    /// The summary as span attributes.
    public var attributes: SpanAttributes {
        var attributes: SpanAttributes = [:]
        merge(into: &attributes)
        return attributes
    }

    /// Sets the summary's attributes in `attributes`, over the same keys there.
    public func merge(into attributes: inout SpanAttributes) {
        forEach { attributes[$0] = $1 }
    }

    /// Whether the span is an error: a server error (5xx) answered.
    public var isError: Bool { statusCode.map { $0 >= 500 } ?? false }

    /// Each attribute the summary holds, by its semantic-convention name.
    public func forEach(_ body: (String, SpanAttribute) -> Void) {
        body(Self.methodKey, .string(method))
        if let statusCode { body(Self.statusCodeKey, .int64(Int64(statusCode))) }
        if let serverAddress { body(Self.serverAddressKey, .string(serverAddress)) }
        if let peerService { body(Self.peerServiceKey, .string(peerService)) }
    }

    /// Whether this summary sets the attribute `key` (it then takes the place of one set on the span).
    public func holds(_ key: String) -> Bool {
        switch key {
        case Self.methodKey: true
        case Self.statusCodeKey: statusCode != nil
        case Self.serverAddressKey: serverAddress != nil
        case Self.peerServiceKey: peerService != nil
        default: false
        }
    }

    static let methodKey = "http.request.method"
    static let statusCodeKey = "http.response.status_code"
    static let serverAddressKey = "server.address"
    static let peerServiceKey = "peer.service"
}

/// Starts ``HTTPServerSpan``s continuing the trace of a request's headers.
///
/// A tracer may offer this itself (ServiceTracing's `OTLPTracer` does): it then starts the span straight from the
/// `traceparent` header, with no `ServiceContext` to extract into, none for the span and no carrier to inject into,
/// and keeps the summary as fields until export. On a proxy that forwards each request in tens of microseconds that
/// difference is measurable (docs/BENCHMARKS.md). Any other tracer goes through the instrument API
/// (``HTTPServerSpans/tracer(_:instrument:)``).
public protocol HTTPServerSpanTracer: Sendable {
    func startHTTPServerSpan(_ operationName: String, requestHeaders: HTTPHeaders) -> any HTTPServerSpan
}

public enum HTTPServerSpans {
    /// The request's `tracestate`: several headers are one list (W3C), joined with commas.
    public static func traceState(_ headers: HTTPHeaders) -> String? {
        let values = headers["tracestate"]
        return values.count > 1 ? values.joined(separator: ",") : values.first
    }

    /// The trace-id field of a `traceparent`, nil when there is none.
    static func traceID(_ traceparent: String) -> Substring? {
        let fields = traceparent.split(separator: "-", maxSplits: 2)
        return fields.count == 3 && fields[1].count == 32 ? fields[1] : nil
    }

    /// The tracer's own short path when it has one, otherwise one through `ServiceContext` with `instrument` (the
    /// process's, by default) carrying the context in and out; nil when `tracer` is the no-op tracer (then nothing at
    /// all is done per request).
    public static func tracer(_ tracer: any Tracer, instrument: any Instrument = InstrumentationSystem.instrument) -> (any HTTPServerSpanTracer)? {
        if tracer is NoOpTracer { return nil }
        if let fast = tracer as? any HTTPServerSpanTracer { return fast }
        return InstrumentedHTTPServerSpanTracer(tracer: tracer, instrument: instrument)
    }
}

/// ``HTTPServerSpanTracer`` for any swift-distributed-tracing tracer: extract, start, inject.
struct InstrumentedHTTPServerSpanTracer: HTTPServerSpanTracer {
    let tracer: any Tracer
    let instrument: any Instrument

    func startHTTPServerSpan(_ operationName: String, requestHeaders: HTTPHeaders) -> any HTTPServerSpan {
        var context = ServiceContext.topLevel
        instrument.extract(requestHeaders, into: &context, using: NIOHeadersExtractor())
        let span = tracer.startAnySpan(operationName, context: context, ofKind: .server)
        var headers: [(String, String)] = []
        instrument.inject(span.context, into: &headers, using: PairsInjector())
        // The proxy sends on only the trace headers made here. An instrument without `tracestate` of its own passes the
        // client's on, as W3C asks, as long as it continued the client's trace.
        if !headers.contains(where: { $0.0 == "tracestate" }), let traceState = HTTPServerSpans.traceState(requestHeaders),
            let continued = headers.first(where: { $0.0 == "traceparent" })?.1,
            let incoming = requestHeaders.first(name: "traceparent"), HTTPServerSpans.traceID(continued) == HTTPServerSpans.traceID(incoming)
        {
            headers.append(("tracestate", traceState))
        }
        return InstrumentedHTTPServerSpan(span: span, traceHeaders: headers)
    }
}

final class InstrumentedHTTPServerSpan: HTTPServerSpan {
    let span: any Span
    let traceHeaders: [(String, String)]

    init(span: any Span, traceHeaders: [(String, String)]) {
        self.span = span
        self.traceHeaders = traceHeaders
    }

    func end(_ summary: HTTPSpanSummary) {
        if span.isRecording {
            // Set once: each attribute set on its own copies the span's attribute table.
            span.attributes = summary.attributes
            if summary.isError { span.setStatus(.init(code: .error)) }
        }
        span.end()
    }
}

/// Trace context into a list of header pairs.
struct PairsInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(String, String)]) { carrier.append((key, value)) }
}
