import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import ServiceCore
import ServiceHTTP
import ServiceTesting
import Testing

/// `GET /metrics`: strict Prometheus text, with counters that move as requests are made.
@Suite struct MetricsTests {
    static func app(service: String) -> some ApplicationProtocol {
        let settings = ServiceSettings(name: service, port: 0)
        let router = ServiceApplication.makeRouter(settings: settings, health: HealthChecker())
        router.get("items/:id") { _, context -> String in try context.parameters.require("id") }
        router.get("broken") { _, _ -> String in throw APIError(.badRequest, "no") }
        return ServiceApplication.makeApplication(router: router, settings: settings, logger: Logger(label: "metrics"))
    }

    static func scrape(_ client: some TestClientProtocol) async throws -> PrometheusText {
        try await client.execute(uri: "/metrics", method: .get) { response in
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            return try PrometheusText(String(buffer: response.body))
        }
    }

    @Test func requestsAreCountedAndTimedPerRouteTemplate() async throws {
        ServiceMetrics.bootstrap()
        let service = "metrics-\(UUID().uuidString.prefix(6).lowercased())"
        try await Self.app(service: service).test(.router) { client in
            _ = try await Self.scrape(client)
            for id in ["a-1", "b-2", "c-3"] {
                try await client.execute(uri: "/items/\(id)", method: .get) { #expect($0.status == .ok) }
            }
            try await client.execute(uri: "/broken", method: .get) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/nowhere/\(UUID().uuidString)", method: .get) { #expect($0.status == .notFound) }

            let after = try await Self.scrape(client)
            #expect(after.types["http_server_requests_total"] == "counter")
            #expect(after.types["http_server_request_duration_seconds"] == "histogram")
            let ok = ["service": service, "method": "GET", "status": "200"]
            let routes = Set(
                after.samples.filter { $0.name == "http_server_requests_total" && $0.labels["service"] == service }.compactMap { $0.labels["route"] })
            // One series for the three items (the template, never the ids), one for the error, one for unmatched paths.
            #expect(routes == ["/items/{id}", "/broken", "unmatched", "/metrics"])
            let itemsRoute = "/items/{id}"
            #expect(after.value("http_server_requests_total", ok.merging(["route": itemsRoute]) { $1 }) == 3)
            #expect(after.value("http_server_requests_total", ["service": service, "route": "/broken", "status": "400"]) == 1)
            #expect(after.value("http_server_requests_total", ["service": service, "route": "unmatched", "status": "404"]) == 1)
            #expect(after.value("http_server_request_duration_seconds_count", ["service": service, "route": itemsRoute]) == 3)
            #expect(after.value("http_server_request_duration_seconds_sum", ["service": service, "route": itemsRoute]) > 0)
        }
    }

    @Test func theParserRefusesWhatPrometheusWouldRefuse() {
        let good = """
            # HELP x_total Things.
            # TYPE x_total counter
            x_total{a="1",b="quote \\" and \\\\ and \\n"} 3
            # TYPE h histogram
            h_bucket{le="0.1"} 1
            h_bucket{le="+Inf"} 2
            h_sum 0.3
            h_count 2
            """
        #expect(throws: Never.self) { try PrometheusText(good) }
        let bad = [
            "x_total 1",  // no TYPE
            "# TYPE x counter\nx{a=\"1\"} one",  // value
            "# TYPE x counter\nx{1a=\"1\"} 1",  // label name
            "# TYPE x counter\nx{a=\"1} 1",  // unterminated
            "# TYPE x counter\nx{a=\"\\q\"} 1",  // escape
            "# TYPE x counter\nx 1\nx 2",  // duplicate series
            "# TYPE x-y counter\nx-y 1",  // metric name
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1",  // not cumulative
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1",  // no +Inf
            "# TYPE x counter\n# TYPE x gauge\nx 1",  // two types
        ]
        for text in bad {
            #expect(throws: PrometheusText.Invalid.self, "\(text)") { try PrometheusText(text) }
        }
    }
}
