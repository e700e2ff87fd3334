import Instrumentation
import NIOHTTP1
import ServiceContextModule
import Tracing

/// W3C trace context (`traceparent`, `tracestate`) in and out of the carriers this toolkit uses: HTTP headers (NIO's,
/// for the proxy and the HTTP client) and events (CloudEvents' distributed-tracing extension). Everything goes through
/// the process's bootstrapped instrument, so with no tracer nothing is created or sent.
public enum TraceContext {
    /// The current context's `traceparent` (nil without a tracer or a span).
    public static func traceparent(_ context: ServiceContext? = ServiceContext.current) -> String? {
        guard let context else { return nil }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        return carrier["traceparent"]
    }

    /// A context continuing the trace of `traceparent` (and `tracestate`); the current one (or a top-level one) when
    /// there is none.
    public static func context(traceparent: String?, tracestate: String? = nil) -> ServiceContext {
        var context = ServiceContext.current ?? .topLevel
        guard let traceparent else { return context }
        var carrier = ["traceparent": traceparent]
        if let tracestate { carrier["tracestate"] = tracestate }
        InstrumentationSystem.instrument.extract(carrier, into: &context, using: DictionaryExtractor())
        return context
    }

    /// The trace and span ids of the current span, for log lines (from its `traceparent`: `00-<trace>-<span>-<flags>`).
    public static func ids(_ context: ServiceContext? = ServiceContext.current) -> (traceID: String, spanID: String)? {
        guard let traceparent = traceparent(context) else { return nil }
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }
}

public struct DictionaryInjector: Injector {
    public init() {}
    public func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

public struct DictionaryExtractor: Extractor {
    public init() {}
    public func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

/// Trace context into NIO's request headers (the proxy's forwarded requests, the HTTP client's requests).
public struct NIOHeadersInjector: Injector {
    public init() {}
    public func inject(_ value: String, forKey key: String, into carrier: inout HTTPHeaders) { carrier.replaceOrAdd(name: key, value: value) }
}

/// Trace context out of NIO's request headers.
public struct NIOHeadersExtractor: Extractor {
    public init() {}
    public func extract(key: String, from carrier: HTTPHeaders) -> String? { carrier.first(name: key) }
}
