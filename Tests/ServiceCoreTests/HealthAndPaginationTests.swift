import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceHTTP
import ServiceTesting
import Testing

@Suite struct HealthAndPaginationTests {
    struct Down: HealthCheckFailure {
        var description: String { "database down" }
    }

    /// A driver's error: its text names a host and must not reach the public report.
    struct DriverError: Error, CustomStringConvertible {
        var description: String { "connection to db-internal.example:5432 refused (SELECT 1)" }
    }

    @Test func allChecksHealthyMeansHealthy() async {
        var checker = HealthChecker()
        checker.addCheck("a") {}
        checker.addCheck("b") {}
        let report = await checker.run()
        #expect(report.status == .healthy)
        #expect(Set(report.checks.keys) == ["a", "b"])
        #expect(report.checks.values.allSatisfy { $0.status == .healthy && $0.responseTime >= 0 })
    }

    @Test func oneFailingOrHangingCheckMakesItUnhealthy() async {
        var checker = HealthChecker(timeout: .milliseconds(50))
        checker.addCheck("ok") {}
        checker.addCheck("db") { throw Down() }
        checker.addCheck("hangs") { try await Task.sleep(for: .seconds(30)) }
        checker.addCheck("driver") { throw DriverError() }
        let report = await checker.run()
        #expect(report.status == .unhealthy)
        #expect(report.checks["ok"]?.status == .healthy)
        #expect(report.checks["db"]?.error == "database down")
        #expect(report.checks["hangs"]?.status == .unhealthy)
        #expect(report.checks["hangs"]?.error == "check timed out")
        #expect(report.checks["driver"]?.status == .unhealthy)
        #expect(report.checks["driver"]?.error == "unavailable")
    }

    @Test func aCheckThatIgnoresCancellationStillTimesOut() async {
        // The check waits on a continuation only the test resumes: cancelling it has no effect.
        let waiting = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)
        var checker = HealthChecker(timeout: .milliseconds(50))
        checker.addCheck("stuck") {
            await withCheckedContinuation { continuation in waiting.withLockedValue { $0 = continuation } }
        }
        let report = await checker.run()
        #expect(report.status == .unhealthy)
        #expect(report.checks["stuck"]?.error == "check timed out")
        waiting.withLockedValue { $0?.resume() }
    }

    @Test func healthRoutesAnswer200Or503() async throws {
        for healthy in [true, false] {
            var checker = HealthChecker()
            checker.addCheck("dep") { if !healthy { throw Down() } }
            let settings = ServiceSettings(name: "svc", port: 0)
            let router = ServiceApplication.makeRouter(settings: settings, health: checker)
            let app = ServiceApplication.makeApplication(router: router, settings: settings, logger: Logger(label: "t"))
            try await app.test(.router) { client in
                try await client.execute(uri: "/health", method: .get) { response async throws in
                    #expect(response.status == (healthy ? .ok : .serviceUnavailable))
                    let object = try response.object()
                    #expect(object["status"] as? String == (healthy ? "healthy" : "unhealthy"))
                    #expect(object["timestamp"] is String)
                    let checks = try #require(object["checks"] as? [String: Any])
                    let dep = try #require(checks["dep"] as? [String: Any])
                    #expect(dep["responseTime"] is Int)
                }
                try await client.execute(uri: "/health/ready", method: .get) { response async throws in
                    #expect(response.status == (healthy ? .ok : .serviceUnavailable))
                }
                try await client.execute(uri: "/health/live", method: .get) { response async throws in
                    #expect(response.status == .ok)
                }
            }
        }
    }

    @Test func paginatedCountsPages() {
        let page = Paginated(results: [1, 2], request: PageRequest(page: 2, limit: 2), total: 5)
        #expect(page.pagination == Paginated<Int>.Info(page: 2, limit: 2, total: 5, pages: 3))
        #expect(Paginated<Int>(results: [], request: PageRequest(), total: 0).pagination.pages == 0)
        #expect(PageRequest(page: 3, limit: 10).offset == 20)
    }

    @Test func pageRequestParsesAndRejects() async throws {
        let settings = ServiceSettings(name: "svc", port: 0)
        let router = ServiceApplication.makeRouter(settings: settings, health: HealthChecker())
        router.get("items") { request, _ -> String in
            let page = try PageRequest(request: request)
            return "\(page.page)/\(page.limit)"
        }
        let app = ServiceApplication.makeApplication(router: router, settings: settings, logger: Logger(label: "t"))
        try await app.test(.router) { client in
            try await client.execute(uri: "/items", method: .get) { #expect(String(buffer: $0.body) == "1/10") }
            try await client.execute(uri: "/items?page=3&limit=25", method: .get) { #expect(String(buffer: $0.body) == "3/25") }
            for query in ["page=0", "page=x", "limit=0", "limit=101", "limit=-5"] {
                try await client.execute(uri: "/items?\(query)", method: .get) { response async throws in
                    #expect(response.status == .badRequest, "\(query)")
                    #expect(response.errorMessage == "Validation failed")
                }
            }
        }
    }
}

@Suite struct ConfigurationTests {
    @Test func settingsComeFromTheEnvironmentWithLocalDefaults() {
        let defaults = ServiceSettings(name: "order", defaultPort: 3002, environment: [:])
        #expect(defaults.host == "127.0.0.1" && defaults.port == 3002 && defaults.databaseURL.isEmpty)
        #expect(defaults.dataDirectory == "./.shop" && defaults.maxBodyBytes == 1 << 20 && defaults.logLevel == .info)
        let set = ServiceSettings(
            name: "order", defaultPort: 3002,
            environment: [
                "PORT": "4002", "HOST": "0.0.0.0", "LOG_LEVEL": "debug", "DATA_DIR": "/d", "DATABASE_URL": "postgres://x@y/z", "MAX_BODY_BYTES": "10",
            ]
        )
        #expect(set.port == 4002 && set.host == "0.0.0.0" && set.logLevel == .debug && set.dataDirectory == "/d")
        #expect(set.databaseURL == "postgres://x@y/z" && set.maxBodyBytes == 10)
        let bad = ServiceSettings(name: "order", defaultPort: 3002, environment: ["PORT": "many", "LOG_LEVEL": "loud"])
        #expect(bad.port == 3002 && bad.logLevel == .info)
    }

    @Test func typedReadersParseOrFallBack() {
        let environment: Environment = ["A": "yes", "B": "off", "N": " 42 ", "E": ""]
        #expect(environment.bool("A", default: false) && !environment.bool("B", default: true) && environment.bool("Z", default: true))
        #expect(environment.int("N", default: 0) == 42 && environment.int("A", default: 7) == 7)
        #expect(environment.string("E", default: "d") == "d" && environment.string("A", default: "d") == "yes")
    }
}
