import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import ServiceTesting
import ShopSystem
import Testing

/// A real service process exporting its spans over OTLP/HTTP to a small local receiver.
@Suite(.serialized) struct TraceExportTests {
    @Test func aServiceExportsItsSpansToTheOTLPEndpoint() async throws {
        let received = NIOLockedValueBox<[Data]>([])
        let receiver: @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service = { onServerRunning in
            let router = Router()
            router.post("v1/traces") { request, _ -> Response in
                let body = try await request.body.collect(upTo: 4 << 20)
                received.withLockedValue { $0.append(Data(buffer: body)) }
                return Response(status: .ok)
            }
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "otlp")
            )
        }
        try await RunningService.with([receiver]) { ports in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-otlp-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let port = try Ports.freeBase()
            let process = try await ChildProcess(
                [SystemTests.shopExecutable.path, "serve", "user"],
                environment: [
                    "PORT": String(port), "DATA_DIR": directory, "DATABASE_URL": "", "AUTH_SERVICE_URL": "http://127.0.0.1:9", "LOG_LEVEL": "info",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(ports[0])", "OTEL_BSP_SCHEDULE_DELAY": "100",
                ],
                captureOutput: true
            )
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let base = "http://127.0.0.1:\(port)"
                try await eventually("the user service to start", timeout: .seconds(30)) {
                    (try? await InProcessShop.call(client, .GET, base + "/health/live"))?.status == .ok
                }
                let signup = try await InProcessShop.call(
                    client, .POST, base + "/users", json: #"{"email":"otlp@example.com","name":"O Tlp","password":"Secret123"}"#
                )
                #expect(signup.status == .created)
                // The batch goes out within the schedule delay: the route's server span, named by its template, from this
                // service, in OTLP protobuf a collector can read.
                try await eventually("spans at the receiver", timeout: .seconds(20)) {
                    let exports = received.withLockedValue { $0 }.compactMap { try? OTLPTraceExport($0) }
                    return exports.contains { export in
                        export.resource["service.name"] == .string("shop-user")
                            && export.spans.contains {
                                $0.name == "/users" && $0.kind == 2 && $0.attributes["http.request.method"] == .string("POST")
                                    && $0.attributes["http.response.status_code"] == .int(201)
                            }
                    }
                }
                // The request's log line names the trace its span was exported in.
                let spanTraces = Set(
                    received.withLockedValue { $0 }.compactMap { try? OTLPTraceExport($0) }.flatMap(\.spans).filter { $0.name == "/users" }.map(
                        \.traceID))
                let requestLine = try await eventually("the request's log line") {
                    process.output.split(separator: "\n").first { $0.contains(#""message":"Request""#) && $0.contains(#""route":"/users""#) }
                }
                #expect(spanTraces.contains { requestLine.contains(#""traceId":"\#($0)""#) }, "\(requestLine) \(spanTraces)")
                // The exporter does not trace its own posts (each would be one more span to post, without end): a request
                // after the first batch arrived comes in a later batch, after any span of that first post.
                let probe = try await InProcessShop.call(client, .GET, base + "/health/live", headers: [("x-probe", "1")])
                #expect(probe.status == .ok)
                try await eventually("the later batch", timeout: .seconds(20)) {
                    received.withLockedValue { $0 }.compactMap { try? OTLPTraceExport($0) }.contains {
                        $0.spans.contains { $0.name == "/health/live" }
                    }
                }
                let exported = received.withLockedValue { $0 }.compactMap { try? OTLPTraceExport($0) }.flatMap(\.spans)
                #expect(!exported.contains { $0.attributes["url.path"] == .string("/v1/traces") }, "no span of the exporter's own posts")
                try await client.shutdown()
                await process.stop()
            } catch {
                try? await client.shutdown()
                await process.stop()
                throw error
            }
        }
    }
}
