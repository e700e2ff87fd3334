import AsyncHTTPClient
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import ServiceResilience
import Synchronization

/// Posts ended spans to an OTLP/HTTP endpoint in protobuf batches: when a batch is full or the schedule delay has
/// passed, and what is left when the service stops. Answers 429/502/503/504 and connection failures are retried with
/// backoff within the export timeout; other failures drop the batch and say so. Counts spans exported, dropped
/// (queue full) and lost (export failed) in `trace_spans_total`.
public final class OTLPExporter: Service {
    let configuration: TracingConfiguration
    let buffer: SpanBuffer
    private let logger: Logger
    private let scope = "swift-shop"

    init(configuration: TracingConfiguration, buffer: SpanBuffer, logger: Logger) {
        self.configuration = configuration
        self.buffer = buffer
        self.logger = logger
    }

    public func run() async throws {
        // The exporter's own posts are not traced: each would be a span to export, and so on without end.
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.tracing.tracer = nil
        let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: clientConfiguration)
        let stopping = StopFlag()
        await withGracefulShutdownHandler {
            while !stopping.isSet, !Task.isCancelled {
                if buffer.count < buffer.batchSize { await buffer.wakeup.wait(timeout: configuration.scheduleDelay) }
                await exportPending(client, retrying: { !stopping.isSet })
            }
        } onGracefulShutdown: {
            stopping.set()
            self.buffer.wakeup.signal()
        }
        // What ended before the stop still goes out: one try per batch, so a collector that is down cannot hold the stop.
        await exportPending(client, retrying: { false })
        try await client.shutdown()
    }

    /// Exports everything waiting, a batch at a time; a failed post is tried again while `retrying()` says so.
    func exportPending(_ client: HTTPClient, retrying: () -> Bool) async {
        let (spans, dropped) = buffer.takeAll()
        if dropped > 0 {
            Counter(label: "trace_spans_total", dimensions: [("outcome", "dropped")]).increment(by: dropped)
            logger.warning("Trace spans dropped: the export queue was full", metadata: ["dropped": "\(dropped)", "queue": "\(buffer.maxQueueSize)"])
        }
        var start = spans.startIndex
        while start < spans.endIndex {
            let end = min(start + buffer.batchSize, spans.endIndex)
            let batch = spans[start..<end]
            let sent = await post(
                OTLPTraceEncoder.encode(batch.lazy.map(\.finished), resource: configuration.resource, scope: scope), client: client,
                retrying: retrying)
            Counter(label: "trace_spans_total", dimensions: [("outcome", sent ? "exported" : "failed")]).increment(by: batch.count)
            start = end
        }
    }

    /// Posts one batch; true when the endpoint took it.
    private func post(_ body: [UInt8], client: HTTPClient, retrying: () -> Bool) async -> Bool {
        var request = HTTPClientRequest(url: configuration.endpoint)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/x-protobuf")
        for (name, value) in configuration.headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let deadline = ContinuousClock.now + configuration.exportTimeout
        var backoff = Duration.milliseconds(500)
        while true {
            let left = deadline - ContinuousClock.now
            var retryAfter: Duration? = nil
            do {
                let response = try await client.execute(request, timeout: .nanoseconds(min(configuration.requestTimeout, left).wholeNanoseconds))
                _ = try? await response.body.collect(upTo: 1 << 20)
                if (200..<300).contains(response.status.code) {
                    logger.debug("Exported trace spans", metadata: ["bytes": "\(body.count)"])
                    return true
                }
                guard [429, 502, 503, 504].contains(response.status.code) else {
                    logger.warning("Trace export refused", metadata: ["status": "\(response.status.code)", "endpoint": "\(configuration.endpoint)"])
                    return false
                }
                // A Retry-After of zero or less (or garbage) is no reason to hammer the collector: the backoff applies.
                retryAfter = response.headers.first(name: "retry-after").flatMap(Int.init).flatMap { $0 > 0 ? .seconds(min($0, 60)) : nil }
            } catch {
                logger.debug("Trace export failed", metadata: ["error": "\(error)"])
            }
            let wait = retryAfter ?? backoff
            guard retrying(), ContinuousClock.now + wait < deadline, !Task.isCancelled else {
                logger.warning("Trace export failed; batch dropped", metadata: ["endpoint": "\(configuration.endpoint)"])
                return false
            }
            try? await Task.sleep(for: wait)
            backoff = min(backoff * 2, .seconds(5))
        }
    }
}

/// Set once, read from any thread.
private final class StopFlag: Sendable {
    private let flag = Atomic(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}
