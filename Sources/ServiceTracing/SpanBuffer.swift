import ServiceCore
import Synchronization

/// Ended spans waiting for export (the spans themselves: their snapshot is taken at export): a bounded queue (spans
/// beyond `maxQueueSize` are dropped and counted, never blocking a request) that wakes the exporter once a batch is full.
///
/// Written by hand rather than using swift-otel's batch span processor, which hops to an actor through an AsyncStream
/// for every span: measured on the gateway, that wake-up per span cost more than the request itself. Here ending a
/// span is one uncontended lock and an append; the exporter is woken once per batch.
final class SpanBuffer: Sendable {
    private struct State {
        var spans: [TraceSpan] = []
        var dropped = 0
    }

    let maxQueueSize: Int
    let batchSize: Int
    let wakeup: Wakeup
    private let state = Mutex(State())

    init(maxQueueSize: Int, batchSize: Int, wakeup: Wakeup = Wakeup()) {
        self.maxQueueSize = max(1, maxQueueSize)
        self.batchSize = max(1, min(batchSize, maxQueueSize))
        self.wakeup = wakeup
    }

    func append(_ span: TraceSpan) {
        let batchFull = state.withLock { state -> Bool in
            guard state.spans.count < maxQueueSize else {
                state.dropped += 1
                return false
            }
            state.spans.append(span)
            return state.spans.count == batchSize
        }
        if batchFull { wakeup.signal() }
    }

    /// Everything waiting, and how many spans were dropped since the last take.
    func takeAll() -> (spans: [TraceSpan], dropped: Int) {
        state.withLock { state in
            defer {
                state.spans = []
                state.spans.reserveCapacity(batchSize)
                state.dropped = 0
            }
            return (state.spans, state.dropped)
        }
    }

    var count: Int { state.withLock { $0.spans.count } }
}
