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

/// Rate limiter, registry and balancer state machines on a manual clock, and the service client balancing over real
/// servers.
@Suite struct DiscoveryTests {
    static func at(_ seconds: Double) -> TestInstant { TestInstant(offset: .milliseconds(Int(seconds * 1000))) }

    // MARK: Rate limiter

    @Test func limitsParseAndPrint() throws {
        #expect(try RateLimit.parse("100/60s") == RateLimit(limit: 100, window: .seconds(60)))
        #expect(try RateLimit.parse(" 10/1m ") == RateLimit(limit: 10, window: .seconds(60)))
        #expect(try RateLimit.parse("5/500ms") == RateLimit(limit: 5, window: .milliseconds(500)))
        #expect(try RateLimit.parse("off") == nil)
        #expect(try RateLimit.parse("100/60s")?.description == "100/60s")
        for bad in ["", "100", "0/60s", "-1/60s", "100/0s", "100/60", "100/xs", "abc/60s", "100/60d"] {
            #expect(throws: RateLimit.Invalid.self, "\(bad)") { try RateLimit.parse(bad) }
        }
    }

    @Test func aWindowAllowsItsLimitThenRefusesUntilItEnds() {
        var machine = RateLimiterMachine<TestInstant>()
        let rate = RateLimit(limit: 3, window: .seconds(60))
        let decisions = (0..<3).map { machine.take("a", rate: rate, now: Self.at(Double($0))) }
        #expect(decisions.map(\.allowed) == [true, true, true])
        #expect(decisions.map(\.remaining) == [2, 1, 0])
        let fourth = machine.take("a", rate: rate, now: Self.at(10))
        #expect(!fourth.allowed && fourth.remaining == 0)
        // The window started with the first request: 50 s are left.
        #expect(fourth.resetAfter == .seconds(50) && fourth.resetSeconds == 50)
        // Another key has its own window.
        #expect(machine.take("b", rate: rate, now: Self.at(10)).allowed)
        // Still refused just before the end, allowed again from the end.
        #expect(!machine.take("a", rate: rate, now: Self.at(59.999)).allowed)
        let renewed = machine.take("a", rate: rate, now: Self.at(60))
        #expect(renewed.allowed && renewed.remaining == 2 && renewed.resetAfter == .seconds(60))
    }

    @Test func expiredWindowsAreSweptSoMemoryIsBounded() {
        var machine = RateLimiterMachine<TestInstant>(sweepAbove: 100)
        let rate = RateLimit(limit: 1, window: .seconds(1))
        for index in 0..<100 { _ = machine.take("client-\(index)", rate: rate, now: Self.at(0)) }
        #expect(machine.trackedKeys == 100)
        // A second later every window has ended: the next request sweeps them.
        _ = machine.take("late", rate: rate, now: Self.at(2))
        #expect(machine.trackedKeys == 1)
    }

    struct BrokenStore: RateLimitStore {
        struct Down: Error {}
        func take(_ key: String, rate: RateLimit) throws -> RateLimitDecision { throw Down() }
    }

    @Test func aSweepKeepsWindowsOfLongerLimitsAlive() {
        var machine = RateLimiterMachine<TestInstant>(sweepAbove: 2)
        let login = RateLimit(limit: 1, window: .seconds(3600))
        let catalog = RateLimit(limit: 1, window: .seconds(60))
        #expect(machine.take("auth|ip:1", rate: login, now: Self.at(0)).allowed)
        _ = machine.take("inventory|ip:1", rate: catalog, now: Self.at(0))
        // Two minutes later a catalog request sweeps: the catalog window has ended, the hour-long login one has not.
        _ = machine.take("inventory|ip:2", rate: catalog, now: Self.at(120))
        #expect(machine.trackedKeys == 2)
        #expect(!machine.take("auth|ip:1", rate: login, now: Self.at(121)).allowed)
    }

    /// A registry shared through Redis: what the shared copy holds is adopted; what it lacks is dropped, unless it was
    /// registered or renewed here since `recentSince` (its write may still be on its way).
    @Test func reconcilingWithASharedRegistry() throws {
        var machine = ServiceRegistryMachine<TestInstant>(ttl: .seconds(15))
        let local = try machine.register(
            ServiceRegistration(name: "order", url: "http://127.0.0.1:4001", instanceId: "order-here"), now: Self.at(10), timestamp: "t10")
        let remote = ServiceInstance(
            id: "order-there", name: "order", url: "http://127.0.0.1:4002", healthCheck: "http://127.0.0.1:4002/health/live", registeredAt: "t0",
            lastHeartbeat: "t0")
        let before = machine.version
        // Read before the local registration reached Redis: the local one is kept, the remote one adopted.
        #expect(machine.reconcile(with: [remote], recentSince: Self.at(9), now: Self.at(11)).isEmpty)
        #expect(machine.instances(of: "order").map(\.id).sorted() == ["order-here", "order-there"])
        #expect(machine.version == before + 1)
        // Renewing the same instance changes nothing the balancers would see.
        #expect(machine.reconcile(with: [remote, local], recentSince: Self.at(11), now: Self.at(12)).isEmpty)
        #expect(machine.version == before + 1)
        // Gone from Redis: the remote one at once; the local one only once its last renewal here is older than the read.
        #expect(machine.reconcile(with: [], recentSince: Self.at(10), now: Self.at(13)).map(\.id) == ["order-there"])
        #expect(machine.reconcile(with: [], recentSince: Self.at(10.001), now: Self.at(14)).map(\.id) == ["order-here"])
        #expect(machine.instances(of: "order").isEmpty && machine.version == before + 3)
    }

    @Test func aFailingStoreIsReportedAndFollowsThePolicy() {
        let reported = NIOLockedValueBox(0)
        let rate = RateLimit(limit: 10, window: .seconds(60))
        let open = RateLimiter(store: BrokenStore(), onFailure: .allow) { _ in reported.withLockedValue { $0 += 1 } }
        let closed = RateLimiter(store: BrokenStore(), onFailure: .deny) { _ in reported.withLockedValue { $0 += 1 } }
        #expect(open.take("k", rate: rate)?.allowed == true)
        #expect(closed.take("k", rate: rate)?.allowed == false)
        #expect(reported.withLockedValue { $0 } == 2)
    }

    // MARK: Registry

    @Test func registrationsAreValidatedFieldByField() throws {
        #expect(throws: Never.self) { try ServiceRegistration(name: "order", url: "http://127.0.0.1:3002").validated() }
        let cases: [(ServiceRegistration, String)] = [
            (.init(name: "", url: "http://127.0.0.1:1"), "name"),
            (.init(name: "Order", url: "http://127.0.0.1:1"), "name"),
            (.init(name: "order", url: "not a url"), "url"),
            (.init(name: "order", url: "ftp://127.0.0.1:1"), "url"),
            (.init(name: "order", url: "https://127.0.0.1:1"), "url"),
            (.init(name: "order", url: "http://127.0.0.1"), "url"),
            (.init(name: "order", url: "http://user:pw@127.0.0.1:1"), "url"),
            (.init(name: "order", url: "http://127.0.0.1:1/path"), "url"),
            (.init(name: "order", url: "http://127.0.0.1:1?x=1"), "url"),
            (.init(name: "order", url: "http://127.0.0.1:1", healthCheck: "http://evil.example:1/health"), "healthCheck"),
            (.init(name: "order", url: "http://127.0.0.1:1", instanceId: "a b"), "instanceId"),
        ]
        for (registration, field) in cases {
            let error = #expect(throws: APIError.self) { try registration.validated() }
            #expect(error?.status == .badRequest)
            #expect(error?.details?.map(\.field) == [field], "\(registration)")
        }
    }

    @Test func instancesExpireWithoutHeartbeatsAndFailedChecksEvict() throws {
        var machine = ServiceRegistryMachine<TestInstant>(ttl: .seconds(15))
        let a = try machine.register(.init(name: "order", url: "http://127.0.0.1:1/", instanceId: "order-a"), now: Self.at(0), timestamp: "t0")
        _ = try machine.register(.init(name: "order", url: "http://127.0.0.1:2", instanceId: "order-b"), now: Self.at(1), timestamp: "t1")
        #expect(a.url == "http://127.0.0.1:1" && a.healthCheck == "http://127.0.0.1:1/health/live")
        #expect(machine.instances(of: "order").map(\.id) == ["order-a", "order-b"])
        // The same id cannot move to another service.
        #expect(throws: ServiceRegistryMachine<TestInstant>.Conflict.self) {
            try machine.register(.init(name: "payment", url: "http://127.0.0.1:3", instanceId: "order-a"), now: Self.at(2), timestamp: "t2")
        }
        // a keeps beating, b does not.
        #expect(machine.heartbeat("order-a", now: Self.at(14), timestamp: "t14") != nil)
        #expect(machine.evictExpired(now: Self.at(15.9)).isEmpty)
        let version = machine.version
        #expect(machine.evictExpired(now: Self.at(16)).map(\.id) == ["order-b"])
        #expect(machine.version > version)
        #expect(machine.heartbeat("order-b", now: Self.at(16), timestamp: "t16") == nil)
        // Two failed health checks in a row evict; a good one in between resets the count.
        #expect(machine.recordCheck("order-a", healthy: false, threshold: 2) == nil)
        #expect(machine.recordCheck("order-a", healthy: true, threshold: 2) == nil)
        #expect(machine.recordCheck("order-a", healthy: false, threshold: 2) == nil)
        #expect(machine.recordCheck("order-a", healthy: false, threshold: 2)?.id == "order-a")
        #expect(machine.instances(of: "order").isEmpty)
    }

    // MARK: Balancer

    @Test func leastOutstandingSpreadsAndSteersAroundABusyInstance() {
        let balancer = InstanceBalancer(name: "s", endpoints: ["a", "b", "c"])
        // Idle instances take turns.
        var seen: [String] = []
        for _ in 0..<6 {
            let pick = balancer.pick()!
            seen.append(pick)
            balancer.finished(pick, success: true)
        }
        #expect(seen == ["a", "b", "c", "a", "b", "c"])
        // Two calls in flight on a and b: the next goes to c, whatever the turn.
        let first = balancer.pick()!
        let second = balancer.pick()!
        #expect(Set([first, second]).count == 2)
        let third = balancer.pick()!
        #expect(!([first, second].contains(third)))
        // Round-robin ignores load.
        let robin = InstanceBalancer(name: "s", endpoints: ["a", "b"], strategy: .roundRobin)
        _ = robin.pick()
        #expect(robin.pick() == "b")
        #expect(robin.pick() == "a")
    }

    @Test func anInstanceAtItsBoundOfCallsInFlightIsPassedOver() {
        let balancer = InstanceBalancer(name: "s", endpoints: ["a", "b"], strategy: .roundRobin, maxOutstanding: 2)
        let taken = (0..<4).compactMap { _ in balancer.pick() }
        #expect(taken.sorted() == ["a", "a", "b", "b"])
        // Both at the bound: refused at once, until one call ends.
        #expect(balancer.pick() == nil)
        balancer.finished("b", success: true)
        #expect(balancer.pick() == "b")
        #expect(balancer.snapshot.map(\.outstanding) == [2, 2])
    }

    @Test func aFailingInstanceIsEjectedAndComesBackAfterATrial() async throws {
        let changes = NIOLockedValueBox<[String]>([])
        let balancer = InstanceBalancer(
            name: "s", endpoints: ["good", "bad"], breaker: .init(consecutiveFailures: 2, openDuration: .seconds(1), halfOpenCalls: 1)
        ) { endpoint, from, to in changes.withLockedValue { $0.append("\(endpoint):\(from)->\(to)") } }
        for _ in 0..<2 {
            #expect(balancer.pick(excluding: ["good"]) == "bad")
            balancer.finished("bad", success: false)
        }
        #expect(changes.withLockedValue { $0 } == ["bad:closed->open"])
        // Ejected: every call goes to the good one, and excluding it leaves nothing.
        for _ in 0..<4 {
            let pick = balancer.pick()
            #expect(pick == "good")
            balancer.finished("good", success: true)
        }
        #expect(balancer.pick(excluding: ["good"]) == nil)
        // After the open period one trial is let through; its success closes the breaker.
        let deadline = ContinuousClock.now + .seconds(10)
        var trial: String?
        while trial == nil, ContinuousClock.now < deadline {
            trial = balancer.pick(excluding: ["good"])
            if trial == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(trial == "bad")
        #expect(balancer.pick(excluding: ["good"]) == nil, "only one trial call while half-open")
        // A trial whose caller gave up says nothing: its slot is given back for another trial.
        balancer.finished("bad", success: nil)
        #expect(balancer.pick(excluding: ["good"]) == "bad")
        balancer.finished("bad", success: true)
        #expect(changes.withLockedValue { $0 } == ["bad:closed->open", "bad:open->half-open", "bad:half-open->closed"])
        #expect(balancer.pick(excluding: ["good"]) == "bad")
    }

    // MARK: Service client over several instances

    static func counter(hits: NIOLockedValueBox<Int>) -> @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service {
        { onServerRunning in
            let router = Router()
            router.post("charge") { _, _ -> String in
                hits.withLockedValue { $0 += 1 }
                return "charged"
            }
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "counter")
            )
        }
    }

    @Test func aCallThatCannotConnectGoesToTheNextInstanceEvenAPost() async throws {
        let hits = (NIOLockedValueBox(0), NIOLockedValueBox(0))
        try await RunningService.with([Self.counter(hits: hits.0), Self.counter(hits: hits.1)]) { ports in
            let closed = try ClosedPort()
            let dead = closed.port
            let client = ServiceClient(
                name: "payment", baseURL: "http://127.0.0.1:\(dead), http://127.0.0.1:\(ports[0]),http://127.0.0.1:\(ports[1])/"
            )
            #expect(client.baseURL == "http://127.0.0.1:\(dead)")
            for _ in 0..<20 {
                // A POST without an Idempotency-Key: safe to send elsewhere only because the dead one never got it.
                #expect(try await client.send(.POST, "/charge").status == 200)
            }
            // Every POST reached exactly one live instance, both live instances served, and the dead one (tried until
            // five failures in a row ejected it) is out.
            #expect(hits.0.withLockedValue { $0 } + hits.1.withLockedValue { $0 } == 20)
            #expect(hits.0.withLockedValue { $0 } > 0 && hits.1.withLockedValue { $0 } > 0)
            let ejected = client.balancer.snapshot.first { $0.endpoint.hasSuffix(":\(dead)") }
            #expect(ejected?.breaker == "open")
            withExtendedLifetime(closed) {}
        }
    }
}
