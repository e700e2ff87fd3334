import Foundation
import InMemoryTracing
import Instrumentation
import ServiceContextModule
import Tracing

/// swift-distributed-tracing's `InMemoryTracer` with W3C trace-context propagation (`traceparent`), which the services
/// use on HTTP and in events: its own propagation uses private header names. Trace ids are 32 and span ids 16 hex
/// digits, as W3C requires. Spans are kept in memory for tests to inspect.
public final class W3CInMemoryTracer: Tracer {
    public typealias Span = InMemorySpan
    public let recorder: InMemoryTracer

    public init() {
        self.recorder = InMemoryTracer(
            idGenerator: .init(nextTraceID: { Self.hex(bytes: 16) }, nextSpanID: { Self.hex(bytes: 8) }),
            recordInjections: false,
            recordExtractions: false
        )
    }

    /// `bytes` random bytes in lowercase hex (W3C ids).
    public static func hex(bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// Every ended span.
    public var finishedSpans: [FinishedInMemorySpan] { recorder.finishedSpans }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> InMemorySpan {
        recorder.startSpan(operationName, context: context(), ofKind: kind, at: instant(), function: function, file: fileID, line: line)
    }

    public func forceFlush() {}

    public func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Carrier == Inject.Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
    }

    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Carrier == Extract.Carrier {
        guard let traceparent = extractor.extract(key: "traceparent", from: carrier) else { return }
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16 else { return }
        context.inMemorySpanContext = InMemorySpanContext(traceID: String(parts[1]), spanID: String(parts[2]), parentSpanID: nil)
    }

    /// The tracer of this test process, bootstrapped once as the global instrument.
    public static let shared: W3CInMemoryTracer = {
        let tracer = W3CInMemoryTracer()
        InstrumentationSystem.bootstrap(tracer)
        return tracer
    }()
}
