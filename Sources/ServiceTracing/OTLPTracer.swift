import Instrumentation
import NIOHTTP1
import ServiceCore
import Synchronization
import Tracing

/// A `Tracer` (swift-distributed-tracing) whose spans carry W3C trace context and are exported over OTLP by
/// `OTLPExporter`. Spans of unsampled traces record nothing and cost only their identity.
///
/// Written by hand rather than taken from swift-otel: with swift-otel 1.6 at full sampling the gateway lost 56 % of its
/// throughput (a task hop per ended span into its batch processor, protobuf conversion through generated types), and
/// its processor and exporter cannot be replaced from outside the package. See docs/BENCHMARKS.md.
public final class OTLPTracer: Tracer {
    public typealias Span = TraceSpan

    public let sampler: TraceSampler
    let buffer: SpanBuffer
    private let random = Mutex(FastRandom())

    init(sampler: TraceSampler, buffer: SpanBuffer) {
        self.sampler = sampler
        self.buffer = buffer
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> TraceSpan {
        let context = context()
        return start(operationName, parent: context.traceSpanContext, in: context, kind: kind, at: instant().nanosecondsSinceEpoch)
    }

    /// A span continuing `parent`'s trace (a new trace without one); `base` is what its context holds besides its
    /// identity.
    private func start(_ name: String, parent: TraceSpanContext?, in base: ServiceContext, kind: SpanKind, at start: UInt64) -> TraceSpan {
        let (traceID, spanID) = random.withLock { random -> (TraceID, SpanID) in
            let traceID = parent?.traceID ?? TraceID(high: random.nonZero(), low: random.nonZero())
            return (traceID, SpanID(random.nonZero()))
        }
        let sampled = sampler.shouldSample(traceID: traceID, parent: parent)
        let spanContext = TraceSpanContext(traceID: traceID, spanID: spanID, sampled: sampled, traceState: parent?.traceState)
        return TraceSpan(
            name: name, base: base, spanContext: spanContext, parentSpanID: parent?.spanID, kind: kind, startNanoseconds: start,
            buffer: sampled ? buffer : nil
        )
    }

    /// Spans are exported by `OTLPExporter` on its schedule; it flushes what is left when it stops.
    public func forceFlush() {
        buffer.wakeup.signal()
    }

    public func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Carrier == Inject.Carrier {
        guard let span = context.traceSpanContext else { return }
        injector.inject(span.traceparent, forKey: "traceparent", into: &carrier)
        if let traceState = span.traceState { injector.inject(traceState, forKey: "tracestate", into: &carrier) }
    }

    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Carrier == Extract.Carrier {
        guard let traceparent = extractor.extract(key: "traceparent", from: carrier),
            let span = TraceSpanContext(traceparent: traceparent, traceState: extractor.extract(key: "tracestate", from: carrier))
        else { return }
        context.traceSpanContext = span
    }
}

extension OTLPTracer: HTTPServerSpanTracer {
    /// A server span straight from the request's `traceparent` and `tracestate`: no `ServiceContext` is made unless
    /// someone asks for the span's, and the summary it ends with stays as fields until export.
    public func startHTTPServerSpan(_ operationName: String, requestHeaders: HTTPHeaders) -> any HTTPServerSpan {
        let parent = requestHeaders.first(name: "traceparent").flatMap {
            TraceSpanContext(traceparent: $0, traceState: HTTPServerSpans.traceState(requestHeaders))
        }
        return start(operationName, parent: parent, in: .topLevel, kind: .server, at: DefaultTracerClock.now.nanosecondsSinceEpoch)
    }
}

/// xoshiro256** seeded from the system's generator: ids for spans need to be unique, not secret, and the system
/// generator costs a system call per number.
struct FastRandom {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    init() {
        var system = SystemRandomNumberGenerator()
        state = (system.next(), system.next(), system.next(), system.next())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    mutating func next() -> UInt64 {
        let result = (state.1 &* 5).rotatedLeft(by: 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3.rotatedLeft(by: 45)
        return result
    }

    mutating func nonZero() -> UInt64 {
        while true {
            let value = next()
            if value != 0 { return value }
        }
    }
}

extension UInt64 {
    fileprivate func rotatedLeft(by count: UInt64) -> UInt64 { self << count | self >> (64 - count) }
}
