import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
import ServiceResilience
import ServiceTesting
import Testing

/// The service client under its resilience policies, against a real server that fails on purpose.
@Suite struct ServiceClientTests {
    /// A server whose `/down` answers 503 and `/up` 200, counting the requests it sees.
    static func server(hits: NIOLockedValueBox<Int>) -> @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service {
        { onServerRunning in
            let router = Router()
            router.get("down") { _, _ -> Response in
                hits.withLockedValue { $0 += 1 }
                return Response(status: .serviceUnavailable)
            }
            router.post("down") { _, _ -> Response in
                hits.withLockedValue { $0 += 1 }
                return Response(status: .serviceUnavailable)
            }
            router.get("up") { _, _ -> String in
                hits.withLockedValue { $0 += 1 }
                return "fine"
            }
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "failing")
            )
        }
    }

    static func policies(failuresToTrip: Int) -> ResiliencePolicies<ContinuousClock> {
        ResiliencePolicies(
            clock: ContinuousClock(),
            retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
            breaker: CircuitBreaker(
                name: "down", configuration: .init(consecutiveFailures: failuresToTrip, openDuration: .seconds(60)), clock: ContinuousClock())
        )
    }

    @Test func safeCallsAreRetriedUnsafeOnesAreNotAndAnOpenBreakerFailsFast() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.server(hits: hits)]) { (ports: [Int]) async throws -> Void in
            let client = ServiceClient(name: "down", baseURL: "http://127.0.0.1:\(ports[0])", policies: Self.policies(failuresToTrip: 5))
            // A GET that keeps failing: three attempts, and the caller gets the last answer.
            #expect(try await client.get("/down").status == 503)
            #expect(hits.withLockedValue { $0 } == 3)
            // A POST is sent once.
            #expect(try await client.send(.POST, "/down").status == 503)
            #expect(hits.withLockedValue { $0 } == 4)
            // The fifth failure trips the breaker (the GET's first attempt); the retry meets the open breaker.
            await #expect(throws: APIError.self) { try await client.get("/down") }
            #expect(hits.withLockedValue { $0 } == 5)
            // Open: refused at once, nothing sent — even to a route that would answer.
            let refused = await #expect(throws: APIError.self) { try await client.get("/up") }
            #expect(refused?.status == .serviceUnavailable)
            #expect(refused?.message.contains("circuit open") == true)
            #expect(hits.withLockedValue { $0 } == 5)
        }
    }

    @Test func aRequestWithAnIdempotencyKeyMayBeRetried() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.server(hits: hits)]) { (ports: [Int]) async throws -> Void in
            let client = ServiceClient(name: "down", baseURL: "http://127.0.0.1:\(ports[0])", policies: Self.policies(failuresToTrip: 100))
            #expect(try await client.send(.POST, "/down", headers: [("Idempotency-Key", "k-1")]).status == 503)
            #expect(hits.withLockedValue { $0 } == 3)
            #expect(try await client.get("/up").status == 200)
        }
    }

    @Test func aFullBulkheadRefusesAtOnceWithoutCallingTheService() async throws {
        let hits = NIOLockedValueBox(0)
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let held: @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service = { onServerRunning in
            let router = Router()
            router.get("hold") { _, _ -> String in
                hits.withLockedValue { $0 += 1 }
                for await _ in release {}
                return "released"
            }
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "held")
            )
        }
        try await RunningService.with([held]) { (ports: [Int]) async throws -> Void in
            let client = ServiceClient(
                name: "slow", baseURL: "http://127.0.0.1:\(ports[0])",
                policies: ResiliencePolicies(clock: ContinuousClock(), bulkhead: Bulkhead(name: "slow", maxConcurrent: 1, maxQueued: 0))
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let status = try await client.get("/hold").status
                    #expect(status == 200)
                }
                // Once the first call is at the server, a second one finds the bulkhead full: 503 at once.
                let deadline = ContinuousClock.now + .seconds(10)
                while hits.withLockedValue({ $0 }) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
                let refused = await #expect(throws: APIError.self) { try await client.get("/hold") }
                #expect(refused?.status == .serviceUnavailable && refused?.message == "slow service busy")
                #expect(hits.withLockedValue { $0 } == 1)
                releaser.finish()
                try await group.waitForAll()
            }
        }
    }
}
