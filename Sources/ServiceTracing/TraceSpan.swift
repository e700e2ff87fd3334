import Synchronization
import Tracing

/// A span of `OTLPTracer`. A sampled span records its name, attributes, events, links and status until it ends, then
/// goes to the tracer's export buffer; an unsampled one only carries its identity, so the decision travels on.
public final class TraceSpan: Span {
    public let context: ServiceContext
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
        var status: SpanStatus?
        var events: [SpanEvent] = []
        var links: [SpanLink] = []
        var droppedAttributes = 0
        var droppedEvents = 0
        var droppedLinks = 0
        var ended = false
    }

    init(
        name: String, context: ServiceContext, spanContext: TraceSpanContext, parentSpanID: SpanID?, kind: SpanKind,
        startNanoseconds: UInt64, buffer: SpanBuffer?
    ) {
        self.context = context
        self.spanContext = spanContext
        self.isRecording = buffer != nil
        self.parentSpanID = parentSpanID
        self.kind = kind
        self.startNanoseconds = startNanoseconds
        self.buffer = buffer
        self.state = Mutex(State(name: name))
    }

    public var operationName: String {
        get { state.withLock { $0.name } }
        set {
            guard isRecording else { return }
            state.withLock { $0.name = newValue }
        }
    }

    /// At most this many attributes, events and links per span (OpenTelemetry's default limits); beyond them the span
    /// keeps what it has and counts what it dropped.
    static let limit = 128

    public var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set {
            guard isRecording else { return }
            guard newValue.count <= Self.limit else {
                var kept: SpanAttributes = [:]
                newValue.forEach { key, value in if kept.count < Self.limit { kept[key] = value } }
                state.withLock {
                    $0.attributes = kept
                    $0.droppedAttributes = newValue.count - kept.count
                }
                return
            }
            state.withLock { $0.attributes = newValue }
        }
    }

    public func setStatus(_ status: SpanStatus) {
        guard isRecording else { return }
        state.withLock { state in
            // OpenTelemetry: OK is final; an error may not replace it.
            if state.status?.code == .ok { return }
            state.status = status
        }
    }

    public func addEvent(_ event: SpanEvent) {
        guard isRecording else { return }
        state.withLock { state in
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
            if state.links.count < Self.limit { state.links.append(link) } else { state.droppedLinks += 1 }
        }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        guard let buffer else { return }
        let end = instant().nanosecondsSinceEpoch
        let finished: FinishedSpan? = state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            return FinishedSpan(
                name: state.name, kind: kind, context: spanContext, parentSpanID: parentSpanID, startNanoseconds: startNanoseconds,
                endNanoseconds: max(end, startNanoseconds), attributes: state.attributes, status: state.status, events: state.events,
                links: state.links.compactMap { link in link.context.traceSpanContext.map { ($0, link.attributes) } },
                dropped: (state.droppedAttributes, state.droppedEvents, state.droppedLinks)
            )
        }
        if let finished { buffer.append(finished) }
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
    var status: SpanStatus?
    var events: [SpanEvent]
    var links: [(TraceSpanContext, SpanAttributes)]
    /// Attributes, events and links beyond the limits.
    var dropped: (attributes: Int, events: Int, links: Int) = (0, 0, 0)
}
