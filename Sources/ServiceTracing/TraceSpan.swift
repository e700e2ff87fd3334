import ServiceCore
import Synchronization
import Tracing

/// A span of `OTLPTracer`. A sampled span records its name, attributes, events, links and status until it ends, then
/// goes to the tracer's export buffer as it is (the exporter takes its snapshot, off the request's path; nothing changes
/// an ended span); an unsampled one only carries its identity, so the decision travels on.
public final class TraceSpan: Span, HTTPServerSpan {
    /// What the span's context holds besides its identity (its parent's context).
    private let base: ServiceContext
    /// This span's identity (also in `context`).
    public let spanContext: TraceSpanContext
    public let isRecording: Bool
    let parentSpanID: SpanID?
    let kind: SpanKind
    let startNanoseconds: UInt64
    private let buffer: SpanBuffer?
    private let state: Mutex<State>

    struct State {
        var name: String
        var attributes: SpanAttributes = [:]
        /// The attributes of an HTTP server span, kept as fields (see `end(_:)`).
        var summary: HTTPSpanSummary?
        var status: SpanStatus?
        var events: [SpanEvent] = []
        var links: [SpanLink] = []
        var droppedAttributes = 0
        var droppedEvents = 0
        var droppedLinks = 0
        /// When the span ended (nil until then).
        var endNanoseconds: UInt64?
    }

    init(
        name: String, base: ServiceContext, spanContext: TraceSpanContext, parentSpanID: SpanID?, kind: SpanKind,
        startNanoseconds: UInt64, buffer: SpanBuffer?
    ) {
        self.base = base
        self.spanContext = spanContext
        self.isRecording = buffer != nil
        self.parentSpanID = parentSpanID
        self.kind = kind
        self.startNanoseconds = startNanoseconds
        self.buffer = buffer
        self.state = Mutex(State(name: name))
    }

    /// The parent's context with this span's identity in it; made when asked for (a proxy's span never is).
    public var context: ServiceContext {
        var context = base
        context.traceSpanContext = spanContext
        return context
    }

    public var operationName: String {
        get { state.withLock { $0.name } }
        set {
            guard isRecording else { return }
            state.withLock { if $0.endNanoseconds == nil { $0.name = newValue } }
        }
    }

    /// At most this many attributes, events and links per span (OpenTelemetry's default limits); beyond them the span
    /// keeps what it has and counts what it dropped. (An HTTP summary's four attributes come on top.)
    static let limit = 128

    public var attributes: SpanAttributes {
        get {
            state.withLock { state in
                guard let summary = state.summary else { return state.attributes }
                var attributes = state.attributes
                summary.merge(into: &attributes)
                return attributes
            }
        }
        set {
            guard isRecording else { return }
            guard newValue.count <= Self.limit else {
                var kept: SpanAttributes = [:]
                newValue.forEach { key, value in if kept.count < Self.limit { kept[key] = value } }
                state.withLock {
                    guard $0.endNanoseconds == nil else { return }
                    $0.attributes = kept
                    $0.droppedAttributes = newValue.count - kept.count
                }
                return
            }
            state.withLock { if $0.endNanoseconds == nil { $0.attributes = newValue } }
        }
    }

    public func setStatus(_ status: SpanStatus) {
        guard isRecording else { return }
        state.withLock { state in
            // OpenTelemetry: OK is final; an error may not replace it.
            if state.status?.code == .ok || state.endNanoseconds != nil { return }
            state.status = status
        }
    }

    public func addEvent(_ event: SpanEvent) {
        guard isRecording else { return }
        state.withLock { state in
            guard state.endNanoseconds == nil else { return }
            if state.events.count < Self.limit { state.events.append(event) } else { state.droppedEvents += 1 }
        }
    }

    public func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        guard isRecording else { return }
        var eventAttributes = attributes
        eventAttributes["exception.type"] = "\(type(of: error))"
        eventAttributes["exception.message"] = "\(error)"
        addEvent(SpanEvent(name: "exception", at: instant(), attributes: eventAttributes))
    }

    public func addLink(_ link: SpanLink) {
        guard isRecording else { return }
        state.withLock { state in
            guard state.endNanoseconds == nil else { return }
            if state.links.count < Self.limit { state.links.append(link) } else { state.droppedLinks += 1 }
        }
    }

    public var traceHeaders: [(String, String)] {
        guard let traceState = spanContext.traceState else { return [("traceparent", spanContext.traceparent)] }
        return [("traceparent", spanContext.traceparent), ("tracestate", traceState)]
    }

    /// Ends an HTTP server span with its summary, kept as fields and written as attributes at export: building an
    /// attribute table per request was the largest part of a traced proxy request's extra cost.
    public func end(_ summary: HTTPSpanSummary) {
        finish(at: DefaultTracerClock.now.nanosecondsSinceEpoch, summary: summary)
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        finish(at: instant().nanosecondsSinceEpoch, summary: nil)
    }

    /// Ends a sampled span once (with its summary in the same step: of two concurrent ends, one wins whole) and queues
    /// it for export.
    private func finish(at nanoseconds: UInt64, summary: HTTPSpanSummary?) {
        guard let buffer else { return }
        let end = max(nanoseconds, startNanoseconds)
        let first = state.withLock { state in
            guard state.endNanoseconds == nil else { return false }
            if let summary {
                state.summary = summary
                if summary.isError, state.status?.code != .ok { state.status = SpanStatus(code: .error) }
            }
            state.endNanoseconds = end
            return true
        }
        if first { buffer.append(self) }
    }

    /// What the ended span exports (made by the exporter).
    var finished: FinishedSpan {
        state.withLock { state in
            FinishedSpan(
                name: state.name, kind: kind, context: spanContext, parentSpanID: parentSpanID, startNanoseconds: startNanoseconds,
                endNanoseconds: state.endNanoseconds ?? startNanoseconds, attributes: state.attributes, summary: state.summary,
                status: state.status, events: state.events,
                links: state.links.compactMap { link in link.context.traceSpanContext.map { ($0, link.attributes) } },
                dropped: (state.droppedAttributes, state.droppedEvents, state.droppedLinks)
            )
        }
    }
}

/// What an ended span leaves for export.
struct FinishedSpan: Sendable {
    var name: String
    var kind: SpanKind
    var context: TraceSpanContext
    var parentSpanID: SpanID?
    var startNanoseconds: UInt64
    var endNanoseconds: UInt64
    var attributes: SpanAttributes
    /// An HTTP server span's attributes as fields (they take precedence over the same keys in `attributes`).
    var summary: HTTPSpanSummary?
    var status: SpanStatus?
    var events: [SpanEvent]
    var links: [(TraceSpanContext, SpanAttributes)]
    /// Attributes, events and links beyond the limits.
    var dropped: (attributes: Int, events: Int, links: Int) = (0, 0, 0)
}
