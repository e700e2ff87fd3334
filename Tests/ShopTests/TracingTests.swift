import Foundation
import Hummingbird
import HummingbirdTesting
import InMemoryTracing
import Logging
import NIOConcurrencyHelpers
import NIOHTTP1
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing
import Tracing

/// Distributed tracing in process, with an in-memory tracer: one checkout through the gateway is one trace.
@Suite struct TracingTests {
    @Test func aCheckoutIsOneTraceAcrossEveryServiceIncludingTheAsynchronousHops() async throws {
        let tracer = W3CInMemoryTracer.shared
        try await Harness.with(.sqlite) { harness in
            try await InProcessShop.with(harness) { shop in
                let (_, token) = try await OrderLifecycleTests.customer(shop)
                // The client starts the trace.
                let traceID = W3CInMemoryTracer.hex(bytes: 16)
                let rootSpan = W3CInMemoryTracer.hex(bytes: 8)
                let reply = try await shop.call(
                    .POST, "/api/checkout", json: CheckoutTests.body(), token: token, headers: [("traceparent", "00-\(traceID)-\(rootSpan)-01")]
                )
                #expect(reply.status == .created, "\(String(buffer: reply.body))")

                @Sendable func spans() -> [FinishedInMemorySpan] { tracer.finishedSpans.filter { $0.traceID == traceID } }
                @Sendable func group(_ span: FinishedInMemorySpan) -> String? {
                    if case .string(let group) = span.attributes["messaging.consumer.group.name"]?.toSpanAttribute() { return group }
                    return nil
                }
                // The asynchronous hops end with the shipped order and its mail. A span ends after its children, so the
                // trace is complete once every finished span's parent has finished too. The snapshot that shows it is the
                // one checked below: later work of the same trace (the mail queue's next hop) may still be finishing.
                let trace = try await eventually("the event handlers' spans, each with its parent") { () -> [FinishedInMemorySpan]? in
                    let trace = spans()
                    let names = Set(trace.map(\.operationName))
                    let ids = Set(trace.map(\.spanID))
                    let complete =
                        names.contains("handle order.fulfillment.requested") && names.contains("handle order.shipped")
                        && trace.contains { group($0) == Queue.orderNotifications }
                        && trace.allSatisfy { $0.operationName == "POST gateway" || $0.parentSpanID.map(ids.contains) == true }
                    return complete ? trace : nil
                }
                let names = Set(trace.map(\.operationName))
                // The gateway, each service's server span (by route), their calls, transactions and saga steps.
                #expect(names.contains("POST gateway"))
                for route in ["/checkout", "/internal/reservations", "/internal/charges"] {
                    #expect(trace.contains { $0.kind == .server && $0.operationName == route }, "server span \(route)")
                }
                #expect(names.contains("POST inventory") && names.contains("POST payment"))
                #expect(
                    names.contains("saga checkout reserveInventory") && names.contains("saga checkout chargePayment")
                        && names.contains("saga checkout createOrder"))
                #expect(names.contains("db.transaction"))
                // Consumers in three services: inventory, order, and the notification queue.
                let groups = Set(trace.compactMap(group))
                #expect(groups.isSuperset(of: ["inventory-service", "order-service", Queue.orderNotifications]), "\(groups)")

                // Parent links: the gateway's span is the client's child; every other span's parent is a span of the trace.
                let ids = Set(trace.map(\.spanID))
                let gateway = trace.filter { $0.operationName == "POST gateway" }
                #expect(gateway.count == 1 && gateway.first?.parentSpanID == rootSpan)
                for span in trace where span.operationName != "POST gateway" {
                    #expect(span.parentSpanID.map(ids.contains) == true, "\(span.operationName) has parent \(span.parentSpanID ?? "none")")
                }
            }
        }
    }
}

extension TracingTests {
    @Test func theLogLineOfAFailingRequestCarriesItsCorrelationAndTraceIDs() async throws {
        _ = W3CInMemoryTracer.shared
        let lines = NIOLockedValueBox<[String]>([])
        var logger = Logger(label: "traced") { label in
            JSONLogHandler(label: label, service: "traced", output: .custom { line in lines.withLockedValue { $0.append(line) } })
        }
        logger.logLevel = .info
        let settings = ServiceSettings(name: "traced", port: 0)
        let router = ServiceApplication.makeRouter(settings: settings, health: HealthChecker())
        router.get("fail") { _, _ -> String in
            struct Broken: Error {}
            throw Broken()
        }
        let app = ServiceApplication.makeApplication(router: router, settings: settings, logger: logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/fail", method: .get, headers: [.init("x-correlation-id")!: "fail-42"]) { response in
                #expect(response.status == .internalServerError)
                #expect(response.headers[.init("x-correlation-id")!] == "fail-42")
                let traceresponse = try #require(response.headers[.init("traceresponse")!])
                let traceID = String(traceresponse.split(separator: "-")[1])
                let line = try #require(lines.withLockedValue { $0 }.first { $0.contains("Unhandled error") })
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(object["correlationId"] as? String == "fail-42")
                #expect(object["traceId"] as? String == traceID)
                #expect((object["spanId"] as? String)?.count == 16)
            }
        }
    }
}
