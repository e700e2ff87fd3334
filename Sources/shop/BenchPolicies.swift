import ArgumentParser
import Foundation
import ServiceCore
import ServiceDiscovery
import ServiceResilience

extension Bench {
    /// `shop bench policies`: what the resilience policies add to one call that succeeds, beside a bare call in the same
    /// run; plus the gateway's per-request work (rate limit, instance pick and release). Build with `-c release`.
    struct Policies: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Cost per call of bulkhead + retry (with budget) + circuit breaker + timeout against a bare call, and of the gateway's rate limiter and balancer."
        )

        @Option(help: "Calls per measurement.")
        var calls = 1_000_000

        @Option(help: "Calls per measurement with a per-attempt timeout (each starts a child task); default a tenth of --calls.")
        var timeoutCalls: Int?

        @Option(help: "Measurements of each kind (the best is reported, as the least disturbed).")
        var rounds = 5

        /// The call under the policies: an async function the optimiser cannot see through.
        @inline(never) static func work(_ value: Int) async -> Int { value &+ 1 }

        func run() async throws {
            let clock = ContinuousClock()
            let full = ResiliencePolicies(
                clock: clock,
                bulkhead: Bulkhead(name: "bench", maxConcurrent: 64, maxQueued: 64),
                retry: RetryPolicy(maxAttempts: 3),
                budget: RetryBudget(clock: clock),
                breaker: CircuitBreaker(name: "bench", clock: clock)
            )
            var timed = full
            timed.timeout = .seconds(5)
            let breakerOnly = ResiliencePolicies(clock: clock, breaker: CircuitBreaker(name: "bench", clock: clock))
            let calls = self.calls
            let rounds = self.rounds

            func measure(count: Int = calls, _ body: () async throws -> Int) async rethrows -> Double {
                var best = Double.infinity
                for _ in 0..<rounds {
                    let start = clock.now
                    let sink = try await body()
                    let elapsed = start.duration(to: clock.now).inSeconds
                    if sink == -1 { print("") }  // keeps the result alive
                    best = min(best, elapsed * 1e9 / Double(count))
                }
                return best
            }

            let bare = await measure {
                var total = 0
                for index in 0..<calls { total &+= await Self.work(index) }
                return total
            }
            let breaker = try await measure {
                var total = 0
                for index in 0..<calls { total &+= try await breakerOnly.run(safeToRetry: true) { await Self.work(index) } }
                return total
            }
            let stacked = try await measure {
                var total = 0
                for index in 0..<calls { total &+= try await full.run(safeToRetry: true) { await Self.work(index) } }
                return total
            }
            let timeoutCalls = max(1, self.timeoutCalls ?? calls / 10)
            let withTimeout = try await measure(count: timeoutCalls) {
                var total = 0
                for index in 0..<timeoutCalls { total &+= try await timed.run(safeToRetry: true) { await Self.work(index) } }
                return total
            }

            let limiter = RateLimiter(store: InMemoryRateLimitStore()) { _ in }
            let rate = RateLimit(limit: Int.max, window: .seconds(60))
            let keys = (0..<1024).map { "orders|user:\($0)" }
            let limit = await measure {
                var total = 0
                for index in 0..<calls { total &+= limiter.take(keys[index & 1023], rate: rate)!.remaining & 1 }
                return total
            }
            let balancer = InstanceBalancer(name: "order", endpoints: ["a", "b"])
            let pick = await measure {
                var total = 0
                for _ in 0..<calls {
                    let endpoint = balancer.pick()!
                    balancer.finished(endpoint, success: true)
                    total &+= endpoint.count
                }
                return total
            }

            print("\(ProcessInfo.processInfo.activeProcessorCount) cores; \(calls) calls per measurement, best of \(rounds)")
            print(String(format: "bare async call:                          %7.1f ns", bare))
            print(String(format: "breaker only:                             %7.1f ns  (+%.1f ns)", breaker, breaker - bare))
            print(String(format: "bulkhead + retry/budget + breaker:        %7.1f ns  (+%.1f ns)", stacked, stacked - bare))
            print(String(format: "  + per-attempt timeout (a child task):   %7.1f ns  (+%.1f ns)", withTimeout, withTimeout - bare))
            print(String(format: "gateway rate limit (1024 clients):        %7.1f ns", limit))
            print(String(format: "gateway instance pick + release (2):      %7.1f ns", pick))
        }
    }
}
