import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
import ServiceTesting
import Testing

/// The caller's deadline travels: a request with no time left is not worked on, and calls to other services carry what
/// is left and are not made once it is gone.
@Suite struct DeadlineTests {
    /// A downstream service that records the deadline header of each request.
    static func downstream(seen: NIOLockedValueBox<[String?]>) -> @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service {
        { onServerRunning in
            let router = Router()
            router.get("work") { request, _ -> String in
                seen.withLockedValue { $0.append(request.headers[HTTPField.Name(RequestDeadline.headerName)!]) }
                return "done"
            }
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "downstream")
            )
        }
    }

    /// A service whose `/call` calls the downstream, after `/slow/call` first works for 200 ms.
    static func caller(downstreamPort: Int, handled: NIOLockedValueBox<Int>) -> some ApplicationProtocol {
        let settings = ServiceSettings(name: "caller", port: 0)
        let router = ServiceApplication.makeRouter(settings: settings, health: HealthChecker())
        let client = ServiceClient(name: "downstream", baseURL: "http://127.0.0.1:\(downstreamPort)")
        router.get("call") { _, _ -> String in
            handled.withLockedValue { $0 += 1 }
            return String(buffer: try await client.get("/work").body)
        }
        router.get("slow/call") { _, _ -> String in
            handled.withLockedValue { $0 += 1 }
            try await Task.sleep(for: .milliseconds(200))
            return String(buffer: try await client.get("/work").body)
        }
        return ServiceApplication.makeApplication(router: router, settings: settings, logger: Logger(label: "caller"))
    }

    static let header = HTTPField.Name(RequestDeadline.headerName)!

    @Test func theDeadlineTravelsAndStopsWorkWhenItHasPassed() async throws {
        let seen = NIOLockedValueBox<[String?]>([])
        let handled = NIOLockedValueBox(0)
        try await RunningService.with([Self.downstream(seen: seen)]) { ports in
            try await Self.caller(downstreamPort: ports[0], handled: handled).test(.router) { client in
                // No deadline: none is sent on.
                try await client.execute(uri: "/call", method: .get) { #expect($0.status == .ok) }
                // Two seconds: the downstream gets what is left, no more.
                try await client.execute(uri: "/call", method: .get, headers: [Self.header: "2000"]) { #expect($0.status == .ok) }
                let values = seen.withLockedValue { $0 }
                #expect(values.count == 2 && values[0] == nil)
                let passed = values[1].flatMap { Int($0) } ?? -1
                #expect(passed > 0 && passed <= 2000)

                // Nothing left on arrival: 504 at once, the handler never runs.
                try await client.execute(uri: "/call", method: .get, headers: [Self.header: "0"]) { response async throws in
                    #expect(response.status == .gatewayTimeout)
                    #expect(response.errorMessage == "Deadline exceeded before the request was handled")
                }
                #expect(handled.withLockedValue { $0 } == 2)
                // Used up while working: the downstream call is not made.
                try await client.execute(uri: "/slow/call", method: .get, headers: [Self.header: "50"]) { response async throws in
                    #expect(response.status == .gatewayTimeout)
                    #expect(response.errorMessage == "Deadline exceeded")
                }
                #expect(seen.withLockedValue { $0.count } == 2)
                // Not a number of milliseconds: 400.
                for bad in ["soon", "-5", "1.5", "99999999999"] {
                    try await client.execute(uri: "/call", method: .get, headers: [Self.header: bad]) { #expect($0.status == .badRequest) }
                }
                #expect(handled.withLockedValue { $0 } == 3)
            }
        }
    }

    @Test func headerValuesParseStrictly() {
        #expect(RequestDeadline.milliseconds("0") == 0)
        #expect(RequestDeadline.milliseconds("1500") == 1500)
        #expect(RequestDeadline.milliseconds("86400000") == 86_400_000)
        for bad in [nil, "", " 1", "1e3", "-1", "86400001", "0x10"] {
            #expect(RequestDeadline.milliseconds(bad) == nil)
        }
    }
}
