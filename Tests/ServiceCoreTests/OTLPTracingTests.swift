import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOHTTP1
import ServiceCore
import ServiceLifecycle
import ServiceTesting
import Testing
import Tracing

@testable import ServiceTracing

/// The toolkit's OTLP tracer: W3C propagation, sampling, and what an OTLP/HTTP receiver gets.
@Suite struct OTLPTracingTests {
    // MARK: Trace context

    @Test func traceparentIsParsedAsW3CRequires() throws {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let context = try #require(TraceSpanContext(traceparent: valid, traceState: "vendor=1"))
        #expect(context.traceID.hex == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(context.spanID.hex == "00f067aa0ba902b7")
        #expect(context.sampled && context.isRemote && context.traceState == "vendor=1")
        #expect(context.traceparent == valid)
        #expect(TraceSpanContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled == false)
        // A later version may add fields after a dash; version 00 may not.
        #expect(TraceSpanContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") != nil)
        for invalid in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "",
        ] {
            #expect(TraceSpanContext(traceparent: invalid) == nil, "\(invalid)")
        }
    }

    @Test func samplersDecideByTraceIDAndFollowTheParent() throws {
        let low = TraceID(high: 1, low: 10)
        let high = TraceID(high: 1, low: UInt64.max >> 1)
        #expect(TraceSampler.traceIDRatio(0.5).shouldSample(traceID: low, parent: nil))
        #expect(!TraceSampler.traceIDRatio(0.5).shouldSample(traceID: high, parent: nil))
        #expect(!TraceSampler.traceIDRatio(0).shouldSample(traceID: low, parent: nil))
        let unsampledParent = TraceSpanContext(traceID: low, spanID: SpanID(1), sampled: false)
        #expect(!TraceSampler.parentBased(root: .alwaysOn).shouldSample(traceID: low, parent: unsampledParent))
        #expect(
            TraceSampler.parentBased(root: .alwaysOff).shouldSample(
                traceID: low, parent: TraceSpanContext(traceID: low, spanID: SpanID(1), sampled: true)))
        #expect(TraceSampler(name: nil, argument: nil) == .parentBased(root: .alwaysOn))
        #expect(TraceSampler(name: "parentbased_traceidratio", argument: "0.1") == .parentBased(root: .traceIDRatio(0.1)))
        #expect(TraceSampler(name: "traceidratio", argument: "1.5") == nil)
        #expect(TraceSampler(name: "sometimes", argument: nil) == nil)
    }

    @Test func configurationFollowsOpenTelemetrysEnvironment() throws {
        #expect(try TracingConfiguration(environment: [:], serviceName: "x") == nil)
        #expect(
            try TracingConfiguration(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"], serviceName: "x")
                == nil)
        #expect(
            try TracingConfiguration(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"], serviceName: "x")
                == nil)
        let configuration = try #require(
            try TracingConfiguration(
                environment: [
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-team=shop",
                    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test", "OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_TRACES_SAMPLER": "always_off",
                ],
                serviceName: "shop-order"
            )
        )
        #expect(configuration.endpoint == "http://collector:4318/v1/traces")
        #expect(configuration.headers.map { "\($0.0)=\($0.1)" } == ["authorization=Bearer abc", "x-team=shop"])
        #expect(configuration.resource.contains { $0 == ("service.name", "shop-order") })
        #expect(configuration.resource.contains { $0 == ("deployment.environment", "test") })
        #expect(configuration.scheduleDelay == .milliseconds(250))
        #expect(configuration.sampler == .alwaysOff)
        let traces = try TracingConfiguration(
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/custom"], serviceName: "x"
        )
        #expect(traces?.endpoint == "http://b:2/custom")
        for bad in [
            ["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"], ["OTEL_TRACES_SAMPLER": "maybe"], ["OTEL_BSP_MAX_QUEUE_SIZE": "-1"],
            ["OTEL_EXPORTER_OTLP_HEADERS": "secret-without-equals"],
        ] {
            #expect(throws: TracingConfigurationError.self) {
                try TracingConfiguration(environment: bad.merging(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"]) { $1 }, serviceName: "x")
            }
        }
        let error = #expect(throws: TracingConfigurationError.self) {
            try TracingConfiguration(
                environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "token-s3cret"], serviceName: "x")
        }
        #expect(error.map { !"\($0)".contains("s3cret") } == true, "a header's value is never in the message")
    }

    // MARK: Spans

    @Test func childSpansContinueTheTraceAndPropagateAsTraceparent() throws {
        let (tracer, _) = OTLPTracing.make(
            configuration: TracingConfiguration(endpoint: "http://127.0.0.1:9/v1/traces", serviceName: "t"), logger: Logger(label: "t"))
        let parent = tracer.startSpan(
            "parent", context: .topLevel, ofKind: .server, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
        let child = tracer.startSpan(
            "child", context: parent.context, ofKind: .client, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
        #expect(child.spanContext.traceID == parent.spanContext.traceID)
        #expect(child.spanContext.spanID != parent.spanContext.spanID)
        #expect(parent.isRecording && child.isRecording)

        var headers: [String: String] = [:]
        tracer.inject(child.context, into: &headers, using: DictionaryInjector())
        #expect(headers["traceparent"] == "00-\(child.spanContext.traceID.hex)-\(child.spanContext.spanID.hex)-01")
        var remote = ServiceContext.topLevel
        tracer.extract(["traceparent": headers["traceparent"]!, "tracestate": "k=v"], into: &remote, using: DictionaryExtractor())
        let server = tracer.startSpan(
            "server", context: remote, ofKind: .server, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
        #expect(server.spanContext.traceID == parent.spanContext.traceID)
        #expect(server.spanContext.traceState == "k=v")

        // An unsampled caller: the decision travels on, nothing is recorded.
        var unsampled = ServiceContext.topLevel
        tracer.extract(["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"], into: &unsampled, using: DictionaryExtractor())
        let quiet = tracer.startSpan(
            "quiet", context: unsampled, ofKind: .server, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
        #expect(!quiet.isRecording)
        quiet.attributes["ignored"] = "yes"
        #expect(quiet.attributes.isEmpty)
        var out: [String: String] = [:]
        tracer.inject(quiet.context, into: &out, using: DictionaryInjector())
        #expect(out["traceparent"]?.hasSuffix("-00") == true)
    }

    /// An HTTP server span started from headers: its summary reads back as attributes (over the same keys set before),
    /// a 5xx makes it an error, and nothing changes a span once it has ended.
    @Test func anHTTPServerSpanEndsWithItsSummaryAndThenNeverChanges() throws {
        let (tracer, _) = OTLPTracing.make(
            configuration: TracingConfiguration(endpoint: "http://127.0.0.1:9/v1/traces", serviceName: "t"), logger: Logger(label: "t"))
        var headers = HTTPHeaders()
        headers.add(name: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        headers.add(name: "tracestate", value: "k=v")
        let started = tracer.startHTTPServerSpan("POST gateway", requestHeaders: headers)
        let span = try #require(started as? TraceSpan)
        #expect(span.parentSpanID?.hex == "00f067aa0ba902b7" && span.spanContext.traceID.hex == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(span.traceHeaders.map(\.0) == ["traceparent", "tracestate"])
        #expect(span.traceHeaders.map(\.1) == [span.spanContext.traceparent, "k=v"])
        #expect(span.context.traceSpanContext?.spanID == span.spanContext.spanID)
        span.attributes["http.response.status_code"] = 1
        span.attributes["app.kept"] = "yes"
        #expect(tracer.buffer.count == 0)
        span.end(HTTPSpanSummary(method: "POST", statusCode: 502, serverAddress: "10.0.0.1:80", peerService: "orders"))
        #expect(tracer.buffer.count == 1)

        span.attributes["late"] = "no"
        span.operationName = "renamed"
        span.setStatus(SpanStatus(code: .ok))
        span.addEvent("late")
        span.end()
        #expect(tracer.buffer.count == 1, "a span is exported once")
        let finished = span.finished
        #expect(finished.name == "POST gateway" && finished.status?.code == .error && finished.events.isEmpty)
        let attributes = span.attributes
        #expect(attributes["late"] == nil)
        #expect(attributes["app.kept"]?.toSpanAttribute() == .string("yes"))
        #expect(attributes["http.response.status_code"]?.toSpanAttribute() == .int64(502))
        #expect(attributes["http.request.method"]?.toSpanAttribute() == .string("POST"))
        #expect(attributes["server.address"]?.toSpanAttribute() == .string("10.0.0.1:80"))
        #expect(attributes["peer.service"]?.toSpanAttribute() == .string("orders"))
        #expect(finished.endNanoseconds >= finished.startNanoseconds)
        // Encoded, a key set on the span and by the summary comes once, with the summary's value.
        let encoded = try #require(try OTLPTraceExport(OTLPTraceEncoder.encode([finished], resource: [], scope: "t")).spans.first)
        #expect(encoded.attributeEntries == 5 && encoded.attributes.count == 5)
        #expect(encoded.attributes["http.response.status_code"] == .int(502) && encoded.attributes["app.kept"] == .string("yes"))

        // Without a traceparent the span starts a trace; a 404 is no error.
        let root = try #require(tracer.startHTTPServerSpan("GET gateway", requestHeaders: HTTPHeaders()) as? TraceSpan)
        #expect(root.parentSpanID == nil && root.traceHeaders.count == 1)
        // An attribute the summary does not set stays the span's.
        root.attributes["server.address"] = "set by hand"
        root.end(HTTPSpanSummary(method: "GET", statusCode: 404, serverAddress: nil, peerService: nil))
        #expect(root.finished.status == nil)
        let rootEncoded = try #require(try OTLPTraceExport(OTLPTraceEncoder.encode([root.finished], resource: [], scope: "t")).spans.first)
        #expect(rootEncoded.attributeEntries == 3 && rootEncoded.attributes["server.address"] == .string("set by hand"))
    }

    // MARK: Export

    /// A local OTLP/HTTP receiver answering each post with the next status of `statuses` (then 200).
    final class Receiver: Sendable {
        let posts = NIOLockedValueBox<[(headers: [String: String], body: [UInt8])]>([])
        let statuses: NIOLockedValueBox<[HTTPResponse.Status]>

        init(statuses: [HTTPResponse.Status] = []) {
            self.statuses = NIOLockedValueBox(statuses)
        }

        var builder: @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service {
            { onServerRunning in
                let router = Router()
                router.post("v1/traces") { request, _ -> Response in
                    let body = try await request.body.collect(upTo: 4 << 20)
                    var headers: [String: String] = [:]
                    for field in request.headers { headers[field.name.canonicalName] = field.value }
                    self.posts.withLockedValue { $0.append((headers, Array(buffer: body))) }
                    let status = self.statuses.withLockedValue { $0.isEmpty ? .ok : $0.removeFirst() }
                    return Response(status: status, headers: [.contentType: "application/x-protobuf"])
                }
                return Application(
                    router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "otlp-receiver")
                )
            }
        }

        var spans: [OTLPTraceExport.DecodedSpan] { get throws { try posts.withLockedValue { $0 }.flatMap { try OTLPTraceExport($0.body).spans } } }
    }

    /// Runs `exporter` while `body` runs, then stops it gracefully (which flushes).
    static func running(_ exporter: OTLPExporter, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(services: [exporter], logger: Logger(label: "exporter"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body()
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func aReceiverGetsEverySpanFieldInOTLPProtobuf() async throws {
        let receiver = Receiver()
        try await RunningService.with([receiver.builder]) { ports in
            var configuration = TracingConfiguration(endpoint: "http://127.0.0.1:\(ports[0])/v1/traces", serviceName: "shop-test")
            configuration.headers = [("x-api-key", "k1")]
            configuration.resource.append(("deployment.environment", "test"))
            configuration.scheduleDelay = .seconds(60)  // only a full batch or the stop sends anything
            configuration.maxExportBatchSize = 2
            let (tracer, exporter) = OTLPTracing.make(configuration: configuration, logger: Logger(label: "otlp"))
            try await Self.running(exporter) {
                let root = tracer.startSpan(
                    "GET /orders/{id}", context: .topLevel, ofKind: .server, at: DefaultTracerClock.now, function: "", file: "", line: 0)
                root.attributes["http.response.status_code"] = 404
                root.attributes["http.request.method"] = "GET"
                root.attributes["retry"] = true
                root.attributes["ratio"] = 0.5
                root.attributes["tags"] = ["a", "b"]
                root.recordError(APIErrorForTest())
                root.setStatus(.init(code: .error, message: "not found"))
                let child = tracer.startSpan(
                    "db.transaction", context: root.context, ofKind: .client, at: DefaultTracerClock.now, function: "", file: "", line: 0)
                child.addLink(SpanLink(context: root.context, attributes: [:]))
                child.end()
                root.end()
                root.end()  // a second end changes nothing
                // The batch of two is full: it goes out long before the schedule delay.
                try await eventually("the first batch") { try receiver.spans.count == 2 }
            }
            let posts = receiver.posts.withLockedValue { $0 }
            #expect(posts.count == 1)
            #expect(posts.first?.headers["content-type"] == "application/x-protobuf")
            #expect(posts.first?.headers["x-api-key"] == "k1")
            let export = try OTLPTraceExport(try #require(posts.first).body)
            #expect(export.resource["service.name"] == .string("shop-test"))
            #expect(export.resource["deployment.environment"] == .string("test"))
            #expect(export.scopes == ["swift-shop"])
            let root = try #require(export.spans.first { $0.name == "GET /orders/{id}" })
            let child = try #require(export.spans.first { $0.name == "db.transaction" })
            #expect(root.traceID.count == 32 && root.spanID.count == 16 && root.parentSpanID == nil)
            #expect(child.traceID == root.traceID && child.parentSpanID == root.spanID)
            #expect(root.kind == 2 && child.kind == 3)
            #expect(root.startNanoseconds > 1_700_000_000_000_000_000 && root.endNanoseconds >= root.startNanoseconds)
            #expect(root.attributes["http.response.status_code"] == .int(404))
            #expect(root.attributes["http.request.method"] == .string("GET"))
            #expect(root.attributes["retry"] == .bool(true))
            #expect(root.attributes["ratio"] == .double(0.5))
            #expect(root.attributes["tags"] == .array([.string("a"), .string("b")]))
            #expect(root.events.first?.name == "exception")
            #expect(root.events.first?.attributes["exception.type"] == .string("APIErrorForTest"))
            #expect(root.statusCode == 2 && root.statusMessage == "not found")
            #expect(child.links.first?.spanID == root.spanID)
        }
    }

    @Test func theStopFlushesRetriesOverloadAndDropsBeyondTheQueue() async throws {
        let receiver = Receiver(statuses: [.serviceUnavailable])
        try await RunningService.with([receiver.builder]) { ports in
            var configuration = TracingConfiguration(endpoint: "http://127.0.0.1:\(ports[0])/v1/traces", serviceName: "shop-test")
            configuration.scheduleDelay = .seconds(60)
            configuration.maxQueueSize = 3
            configuration.maxExportBatchSize = 3
            let (tracer, exporter) = OTLPTracing.make(configuration: configuration, logger: Logger(label: "otlp"))
            // Five spans end before anything is exported: the queue holds three, two are dropped (and counted).
            for index in 0..<5 {
                tracer.startSpan("span \(index)", context: .topLevel, ofKind: .internal, at: DefaultTracerClock.now, function: "", file: "", line: 0)
                    .end()
            }
            try await Self.running(exporter) {
                // The first post is answered 503 and retried; the batch arrives whole.
                try await eventually("the retried batch") { receiver.posts.withLockedValue { $0.count } == 2 }
                tracer.startSpan("late", context: .topLevel, ofKind: .internal, at: DefaultTracerClock.now, function: "", file: "", line: 0).end()
            }
            // The late span went out with the stop, not after the schedule delay.
            let posts = receiver.posts.withLockedValue { $0 }
            #expect(posts.count == 3)
            #expect(try OTLPTraceExport(posts[0].body).spans.map(\.name) == ["span 0", "span 1", "span 2"])
            #expect(try OTLPTraceExport(posts[1].body).spans.map(\.name) == ["span 0", "span 1", "span 2"])
            #expect(try OTLPTraceExport(posts[2].body).spans.map(\.name) == ["late"])
        }
    }

    @Test func unsampledTracesExportNothing() async throws {
        let receiver = Receiver()
        try await RunningService.with([receiver.builder]) { ports in
            var configuration = TracingConfiguration(endpoint: "http://127.0.0.1:\(ports[0])/v1/traces", serviceName: "shop-test")
            configuration.sampler = .parentBased(root: .alwaysOff)
            let (tracer, exporter) = OTLPTracing.make(configuration: configuration, logger: Logger(label: "otlp"))
            try await Self.running(exporter) {
                let span = tracer.startSpan("off", context: .topLevel, ofKind: .server, at: DefaultTracerClock.now, function: "", file: "", line: 0)
                #expect(!span.isRecording)
                span.end()
                var sampled = ServiceContext.topLevel
                tracer.extract(
                    ["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"], into: &sampled, using: DictionaryExtractor())
                // A caller that sampled its trace is followed even though new traces are off.
                tracer.startSpan("on", context: sampled, ofKind: .server, at: DefaultTracerClock.now, function: "", file: "", line: 0).end()
            }
            #expect(try receiver.spans.map(\.name) == ["on"])
            #expect(try receiver.spans.first?.parentSpanID == "00f067aa0ba902b7")
        }
    }
}

struct APIErrorForTest: Error {}
