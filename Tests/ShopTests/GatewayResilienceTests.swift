import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceLifecycle
import ServiceResilience
import ServiceTesting
import ShopContracts
import Testing

@testable import GatewayService

/// The gateway's rate limits, the registry it hosts, and balancing over registered instances, against stub upstreams.
@Suite struct GatewayResilienceTests {
    /// A stub service instance: answers every path with its label, and counts what it served.
    static func stub(_ label: String, hits: NIOLockedValueBox<Int>) -> @Sendable (@escaping @Sendable (Int) async -> Void) async throws -> any Service
    {
        { onServerRunning in
            let router = Router()
            router.get("health/live") { _, _ in "alive" }
            router.on("**", method: .get) { request, _ -> String in
                hits.withLockedValue { $0 += 1 }
                if request.uri.path.hasSuffix("/slow") { try await Task.sleep(for: .milliseconds(300)) }
                let deadline = request.headers[HTTPField.Name("x-request-timeout-ms")!] ?? ""
                return #"{"instance":"\#(label)","path":"\#(request.uri.path)","deadline":"\#(deadline)"}"#
            }
            return Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "stub-\(label)")
            )
        }
    }

    struct Gateway: Sendable {
        let url: String
        let keys: TestKeys
        let client: HTTPClient

        func call(_ method: HTTPMethod, _ path: String, json: String? = nil, token: String? = nil) async throws -> InProcessShop.Reply {
            try await InProcessShop.call(client, method, url + path, json: json, token: token)
        }
    }

    /// A gateway whose every service is the stub on `upstreamPort`, with test keys, adjusted by `configure`.
    static func withGateway<T: Sendable>(
        upstreamPort: Int, configure: @Sendable (inout GatewayConfiguration) -> Void = { _ in }, _ body: @Sendable (Gateway) async throws -> T
    ) async throws -> T {
        let keys = try await TestKeys()
        var configuration = GatewayConfiguration(environment: [:])
        configuration.settings = ServiceSettings(name: "gateway", port: 0, logLevel: .warning)
        configuration.serviceURLs = Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, "http://127.0.0.1:\(upstreamPort)") })
        configuration.healthChecked = []
        configuration.tokenVerifier = keys.verifier
        configure(&configuration)
        let configured = configuration
        return try await RunningService.with([
            {
                var c = configured; c.onServerRunning = $0; return try buildGateway(c)
            }
        ]) { ports in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let result = try await body(Gateway(url: "http://127.0.0.1:\(ports[0])", keys: keys, client: client))
                try await client.shutdown()
                return result
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
    }

    // MARK: Rate limiting

    @Test func theHundredAndFirstRequestIsRefusedAndOtherClientsGoOn() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
            try await Self.withGateway(upstreamPort: ports[0], configure: { $0.rateLimitOverrides = ["orders": "3/60s"] }) { gateway in
                let metricsBefore = try PrometheusText(String(buffer: try await gateway.call(.GET, "/metrics").body))
                // Anonymous: keyed by IP address, the default 100 per 60 s.
                for index in 1...100 {
                    let reply = try await gateway.call(.GET, "/api/inventory/product-1")
                    #expect(reply.status == .ok)
                    #expect(reply.headers.first(name: "ratelimit-limit") == "100")
                    #expect(reply.headers.first(name: "ratelimit-remaining") == String(100 - index))
                    #expect(reply.headers.first(name: "ratelimit-policy") == "100;w=60")
                }
                let refused = try await gateway.call(.GET, "/api/inventory/product-1")
                #expect(refused.status == .tooManyRequests)
                #expect(refused.object["error"] as? String == "Too many requests")
                let retryAfter = refused.object["retryAfter"] as? Int ?? 0
                #expect((1...60).contains(retryAfter))
                #expect(refused.headers.first(name: "retry-after") == String(retryAfter))
                #expect(refused.headers.first(name: "ratelimit-remaining") == "0")
                #expect(refused.headers.first(name: "ratelimit-reset") == String(retryAfter))
                #expect(hits.withLockedValue { $0 } == 100, "the refused request never reached the service")

                // Authenticated clients are keyed by user, per route group (orders limited to 3 here).
                let jane = try await gateway.keys.token("jane")
                let john = try await gateway.keys.token("john")
                for _ in 1...3 { #expect(try await gateway.call(.GET, "/api/orders", token: jane).status == .ok) }
                let janeRefused = try await gateway.call(.GET, "/api/orders", token: jane)
                #expect(janeRefused.status == .tooManyRequests)
                #expect(janeRefused.headers.first(name: "ratelimit-limit") == "3")
                // Another user, and the same user in another group, are unaffected.
                #expect(try await gateway.call(.GET, "/api/orders", token: john).status == .ok)
                #expect(try await gateway.call(.GET, "/api/notifications", token: jane).status == .ok)

                // The gateway's /metrics (strict Prometheus text) counted the refusals and the forwarded answers.
                let metrics = try PrometheusText(String(buffer: try await gateway.call(.GET, "/metrics").body))
                let limited =
                    metrics.value("gateway_rate_limited_total", ["group": "inventory"])
                    - metricsBefore.value("gateway_rate_limited_total", ["group": "inventory"])
                #expect(limited >= 1)
                let forwarded =
                    metrics.value("gateway_upstream_responses_total", ["target": "inventory", "outcome": "2xx"])
                    - metricsBefore.value("gateway_upstream_responses_total", ["target": "inventory", "outcome": "2xx"])
                #expect(forwarded >= 100)
            }
        }
    }

    struct BrokenStore: RateLimitStore {
        struct Down: Error {}
        func take(_ key: String, rate: RateLimit) throws -> RateLimitDecision { throw Down() }
    }

    @Test(arguments: [RateLimiter.FailurePolicy.allow, .deny])
    func aFailingLimiterStoreFollowsTheConfiguredPolicy(_ policy: RateLimiter.FailurePolicy) async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
            try await Self.withGateway(
                upstreamPort: ports[0],
                configure: {
                    $0.rateLimitStore = BrokenStore()
                    $0.rateLimitOnStoreFailure = policy
                }
            ) { gateway in
                let reply = try await gateway.call(.GET, "/api/inventory/product-1")
                #expect(reply.status == (policy == .allow ? .ok : .tooManyRequests))
                #expect(hits.withLockedValue { $0 } == (policy == .allow ? 1 : 0))
            }
        }
    }

    /// Two gateways over one Redis: one limit per client and group, not one each; headers count across both.
    @Test func twoGatewaysOverOneRedisEnforceOneLimit() async throws {
        let hits = NIOLockedValueBox(0)
        try await RedisTestServer.with { redis in
            try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
                let shared: @Sendable (inout GatewayConfiguration) -> Void = {
                    $0.redisURL = redis.url
                    $0.rateLimit = "10/60s"
                }
                try await Self.withGateway(upstreamPort: ports[0], configure: shared) { first in
                    try await Self.withGateway(upstreamPort: ports[0], configure: shared) { second in
                        var remaining: [String] = []
                        var statuses: [HTTPResponseStatus] = []
                        for index in 0..<16 {
                            let reply = try await (index % 2 == 0 ? first : second).call(.GET, "/api/inventory/product-1")
                            statuses.append(reply.status)
                            remaining.append(reply.headers.first(name: "ratelimit-remaining") ?? "")
                            if reply.status == .tooManyRequests {
                                #expect(Int(reply.headers.first(name: "retry-after") ?? "") ?? 0 > 0)
                            }
                        }
                        #expect(statuses.filter { $0 == .ok }.count == 10, "\(statuses)")
                        #expect(statuses.suffix(6).allSatisfy { $0 == .tooManyRequests })
                        #expect(remaining.prefix(10) == ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"])
                        #expect(hits.withLockedValue { $0 } == 10)
                    }
                }
            }
        }
    }

    /// Redis that stops answering (paused: connections open, nothing read): each decision gives up within its 50 ms,
    /// whether its connection is new or old, and the policy decides.
    @Test func aSilentRedisCostsADecisionItsTimeoutAtMost() async throws {
        let hits = NIOLockedValueBox(0)
        try await RedisTestServer.with { redis in
            try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
                try await Self.withGateway(upstreamPort: ports[0], configure: { $0.redisURL = redis.url }) { gateway in
                    #expect(try await gateway.call(.GET, "/api/inventory/product-1").status == .ok)
                    redis.pause()
                    defer { redis.resume() }
                    for _ in 0..<10 {
                        let started = ContinuousClock.now
                        let reply = try await gateway.call(.GET, "/api/inventory/product-1")
                        #expect(reply.status == .ok)
                        #expect(ContinuousClock.now - started < .milliseconds(400), "\(ContinuousClock.now - started)")
                    }
                    #expect(hits.withLockedValue { $0 } == 11)
                }
            }
        }
    }

    /// Redis gone: each decision gives up within its own timeout and the policy decides; nothing hangs.
    @Test(arguments: [RateLimiter.FailurePolicy.allow, .deny])
    func aDeadRedisFollowsTheStoreFailurePolicyQuickly(_ policy: RateLimiter.FailurePolicy) async throws {
        let hits = NIOLockedValueBox(0)
        try await RedisTestServer.with { redis in
            try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
                try await Self.withGateway(
                    upstreamPort: ports[0],
                    configure: {
                        $0.redisURL = redis.url
                        $0.rateLimitOnStoreFailure = policy
                    }
                ) { gateway in
                    // The first decisions also connect and load the script within the 50 ms timeout: on a busy machine
                    // one may miss it (and `deny` refuse). Counted in Redis once one succeeds.
                    try await eventually("a decision counted in Redis") {
                        try await gateway.call(.GET, "/api/inventory/product-1").status == .ok
                    }
                    let admitted = hits.withLockedValue { $0 }
                    await redis.kill()
                    for _ in 0..<5 {
                        let started = ContinuousClock.now
                        let reply = try await gateway.call(.GET, "/api/inventory/product-1")
                        #expect(reply.status == (policy == .allow ? .ok : .tooManyRequests))
                        #expect(ContinuousClock.now - started < .milliseconds(500))
                    }
                    #expect(hits.withLockedValue { $0 } == admitted + (policy == .allow ? 5 : 0))
                    // Redis back: counted there again, without restarting the gateway.
                    try await redis.start()
                    try await eventually("the limit counted in Redis again", timeout: .seconds(10)) {
                        let reply = try await gateway.call(.GET, "/api/inventory/product-1")
                        return reply.status == .ok && reply.headers.first(name: "ratelimit-remaining") != "0"
                    }
                }
            }
        }
    }

    /// Two gateways over one Redis share the registry: an instance registered with one is balanced by the other, and
    /// gone from both once unregistered with either.
    @Test func anInstanceRegisteredWithOneGatewayIsBalancedByTheOther() async throws {
        let hitsA = NIOLockedValueBox(0)
        let hitsB = NIOLockedValueBox(0)
        try await RedisTestServer.with { redis in
            try await RunningService.with([Self.stub("a", hits: hitsA), Self.stub("b", hits: hitsB)]) { ports in
                let shared: @Sendable (inout GatewayConfiguration) -> Void = {
                    $0.redisURL = redis.url
                    $0.rateLimit = "off"
                    $0.registrySyncInterval = .milliseconds(100)
                }
                try await Self.withGateway(upstreamPort: ports[0], configure: shared) { first in
                    try await Self.withGateway(upstreamPort: ports[0], configure: shared) { second in
                        func instance(via gateway: Gateway) async throws -> String? {
                            try await gateway.call(.GET, "/api/inventory/product-1").object["instance"] as? String
                        }
                        // Before: both gateways send to the configured URL (stub a).
                        #expect(try await instance(via: second) == "a")
                        let token = try await first.keys.token("inventory", role: .service, scopes: [Scope.registryRegister])
                        let registration = #"{"name":"inventory","url":"http://127.0.0.1:\#(ports[1])","instanceId":"inventory-shared-1"}"#
                        #expect(try await first.call(.POST, "/register", json: registration, token: token).status == .created)
                        // The other gateway balances over it within its sync interval, without a registration of its own.
                        try await eventually("the second gateway to use the instance registered with the first", timeout: .seconds(5)) {
                            try await instance(via: second) == "b"
                        }
                        let keys = try await ChildProcess.output(of: ["redis-cli", "-p", String(redis.port), "SMEMBERS", "registry:instances"])
                        #expect(keys.output.contains("inventory-shared-1"))
                        // Unregistered with the first: gone from Redis, and the second goes back to the configured URL.
                        #expect(try await first.call(.DELETE, "/register/inventory-shared-1", token: token).status == .noContent)
                        try await eventually("the second gateway to drop it", timeout: .seconds(5)) {
                            try await instance(via: second) == "a"
                        }
                    }
                }
            }
        }
    }

    @Test func rateLimitOffForwardsEverything() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
            try await Self.withGateway(upstreamPort: ports[0], configure: { $0.rateLimit = "off" }) { gateway in
                for _ in 0..<120 {
                    let reply = try await gateway.call(.GET, "/api/inventory/product-1")
                    #expect(reply.status == .ok && reply.headers.first(name: "ratelimit-limit") == nil)
                }
                #expect(hits.withLockedValue { $0 } == 120)
            }
        }
    }

    @Test func theGatewaySendsTheDeadlineOn() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
            try await Self.withGateway(upstreamPort: ports[0]) { gateway in
                // Without one from the client: the gateway's own upstream timeout (30 s).
                #expect(try await gateway.call(.GET, "/api/inventory/p").object["deadline"] as? String == "30000")
                // A client that waits less: its budget.
                let shorter = try await InProcessShop.call(
                    gateway.client, .GET, gateway.url + "/api/inventory/p", headers: [("X-Request-Timeout-Ms", "15000")]
                )
                // What is left of it when forwarded: the time spent in the gateway is taken off.
                let left = (shorter.object["deadline"] as? String).flatMap { Int($0) } ?? 0
                #expect(left > 10_000 && left <= 15_000)
                // More than the gateway allows: capped.
                let longer = try await InProcessShop.call(
                    gateway.client, .GET, gateway.url + "/api/inventory/p", headers: [("X-Request-Timeout-Ms", "600000")]
                )
                #expect(longer.object["deadline"] as? String == "30000")
                // Nothing left: answered at once, not forwarded.
                let expired = try await InProcessShop.call(
                    gateway.client, .GET, gateway.url + "/api/inventory/p", headers: [("X-Request-Timeout-Ms", "0")])
                #expect(expired.status == .gatewayTimeout)
                #expect(hits.withLockedValue { $0 } == 3)
            }
        }
    }

    @Test func tinyClientDeadlinesDoNotEjectAHealthyInstance() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
            try await Self.withGateway(upstreamPort: ports[0]) { gateway in
                // Ten callers that give up after 20 ms on a 300 ms route: each gets its 504…
                for _ in 0..<10 {
                    let reply = try await InProcessShop.call(
                        gateway.client, .GET, gateway.url + "/api/inventory/slow", headers: [("X-Request-Timeout-Ms", "20")]
                    )
                    #expect(reply.status == .gatewayTimeout)
                }
                // …and the instance, which did nothing wrong, is still in service (five failures would eject it).
                #expect(try await gateway.call(.GET, "/api/inventory/product-1").status == .ok)
            }
        }
    }

    // MARK: Registry

    @Test func theRegistryRefusesBadInputAndStrangers() async throws {
        let hits = NIOLockedValueBox(0)
        try await RunningService.with([Self.stub("a", hits: hits)]) { ports in
            try await Self.withGateway(upstreamPort: ports[0]) { gateway in
                let keys = gateway.keys
                let order = try await keys.token("order", role: .service, scopes: [Scope.registryRegister])
                let payment = try await keys.token("payment", role: .service, scopes: [Scope.registryRegister])
                let unscoped = try await keys.token("order", role: .service)
                let user = try await keys.token("jane")
                let admin = try await keys.token("root", role: .admin)
                let valid = #"{"name":"order","url":"http://127.0.0.1:\#(ports[0])","instanceId":"order-test-1"}"#

                let anonymous = try await gateway.call(.POST, "/register", json: valid)
                #expect(anonymous.status == .unauthorized && anonymous.object["error"] as? String == "Access denied")
                #expect(try await gateway.call(.POST, "/register", json: valid, token: "garbage").status == .unauthorized)
                let byUser = try await gateway.call(.POST, "/register", json: valid, token: user)
                #expect(byUser.status == .forbidden)
                let withoutScope = try await gateway.call(.POST, "/register", json: valid, token: unscoped)
                #expect(withoutScope.status == .forbidden)
                #expect(withoutScope.object["error"] as? String == "Registering needs a service token with scope registry:register")
                let byOther = try await gateway.call(.POST, "/register", json: valid, token: payment)
                #expect(byOther.status == .forbidden)
                #expect(byOther.object["error"] as? String == "A service may only register its own instances")

                let notJSON = try await gateway.call(.POST, "/register", json: "{name:", token: order)
                #expect(notJSON.status == .badRequest)
                let missing = try await gateway.call(.POST, "/register", json: "{}", token: order)
                #expect(missing.status == .badRequest)
                let malformed = try await gateway.call(.POST, "/register", json: #"{"name":"order","url":"http//nowhere"}"#, token: order)
                #expect(malformed.status == .badRequest)
                #expect(malformed.object["error"] as? String == "Validation failed")
                #expect((malformed.object["details"] as? [[String: Any]])?.first?["field"] as? String == "url")

                let created = try await gateway.call(.POST, "/register", json: valid, token: order)
                #expect(created.status == .created)
                let answer = try created.json(RegistrationAnswer.self)
                #expect(answer.instance.id == "order-test-1" && answer.instance.url == "http://127.0.0.1:\(ports[0])")
                #expect(answer.ttlMs == 15_000 && answer.heartbeatIntervalMs == 5_000)

                #expect(try await gateway.call(.GET, "/services/order", token: user).status == .forbidden)
                let found = try await gateway.call(.GET, "/services/order", token: payment)
                #expect(try found.json(DiscoveryAnswer.self).instances.map(\.id) == ["order-test-1"])
                let all = try await gateway.call(.GET, "/services", token: admin)
                #expect(all.status == .ok && (all.object["services"] as? [String: Any])?["order"] != nil)
                #expect(try await gateway.call(.GET, "/services/nothing", token: payment).status == .notFound)

                #expect(try await gateway.call(.PUT, "/register/order-test-1", token: payment).status == .forbidden)
                #expect(try await gateway.call(.PUT, "/register/order-test-1", token: order).status == .ok)
                #expect(try await gateway.call(.PUT, "/register/unknown", token: order).status == .notFound)
                #expect(try await gateway.call(.DELETE, "/register/order-test-1", token: payment).status == .forbidden)
                #expect(try await gateway.call(.DELETE, "/register/order-test-1", token: order).status == .noContent)
                #expect(try await gateway.call(.GET, "/services/order", token: payment).status == .notFound)
                #expect(try await gateway.call(.PATCH, "/register", token: order).status == .notFound)
            }
        }
    }

    @Test func requestsSpreadOverRegisteredInstancesAndADeadOneIsSkippedThenEvicted() async throws {
        let hits = (NIOLockedValueBox(0), NIOLockedValueBox(0), NIOLockedValueBox(0))
        try await RunningService.with([Self.stub("static", hits: hits.0), Self.stub("a", hits: hits.1), Self.stub("b", hits: hits.2)]) { ports in
            try await Self.withGateway(
                upstreamPort: ports[0],
                configure: {
                    // Health checks evict, not the TTL: these registrations send no heartbeats, and a loaded machine may
                    // take longer than the default 15 s over the test.
                    $0.registryCheckInterval = .milliseconds(100)
                    $0.registryTTL = .seconds(300)
                }
            ) { gateway in
                let order = try await gateway.keys.token("order", role: .service, scopes: [Scope.registryRegister])
                let jane = try await gateway.keys.token("jane")
                let dead = try ClosedPort()
                for (id, port) in [("order-a", ports[1]), ("order-b", ports[2]), ("order-dead", dead.port)] {
                    let body = #"{"name":"order","url":"http://127.0.0.1:\#(port)","instanceId":"\#(id)"}"#
                    #expect(try await gateway.call(.POST, "/register", json: body, token: order).status == .created)
                }
                for _ in 0..<30 {
                    let reply = try await gateway.call(.GET, "/api/orders", token: jane)
                    // Requests that met the dead instance went on to a live one: none failed.
                    #expect(reply.status == .ok)
                }
                // Registered instances replace the configured URL, and both live ones served.
                #expect(hits.0.withLockedValue { $0 } == 0)
                #expect(hits.1.withLockedValue { $0 } + hits.2.withLockedValue { $0 } == 30)
                #expect(hits.1.withLockedValue { $0 } >= 5 && hits.2.withLockedValue { $0 } >= 5)
                // The registry's health checks evict the dead instance.
                try await eventually("the registry to evict the dead instance", timeout: .seconds(15)) {
                    let found = try await gateway.call(.GET, "/services/order", token: order)
                    return try found.json(DiscoveryAnswer.self).instances.map(\.id).sorted() == ["order-a", "order-b"]
                }
                withExtendedLifetime(dead) {}
            }
        }
    }

    @Test func anInstanceThatStopsHeartbeatingIsEvictedAndTrafficFallsBack() async throws {
        let hits = (NIOLockedValueBox(0), NIOLockedValueBox(0))
        try await RunningService.with([Self.stub("static", hits: hits.0), Self.stub("a", hits: hits.1)]) { ports in
            try await Self.withGateway(
                upstreamPort: ports[0],
                configure: {
                    $0.registryTTL = .milliseconds(600)
                    $0.registryCheckInterval = .milliseconds(100)
                }
            ) { gateway in
                let order = try await gateway.keys.token("order", role: .service, scopes: [Scope.registryRegister])
                let jane = try await gateway.keys.token("jane")
                let body = #"{"name":"order","url":"http://127.0.0.1:\#(ports[1])","instanceId":"order-quiet"}"#
                let started = ContinuousClock.now
                #expect(try await gateway.call(.POST, "/register", json: body, token: order).status == .created)
                #expect(try await gateway.call(.GET, "/api/orders", token: jane).status == .ok)
                // Healthy but silent: the TTL, not a health check, removes it.
                try await eventually("the TTL to remove the silent instance", timeout: .seconds(15)) {
                    try await gateway.call(.GET, "/services/order", token: order).status == .notFound
                }
                #expect(ContinuousClock.now - started >= .milliseconds(600))
                let before = hits.0.withLockedValue { $0 }
                #expect(try await gateway.call(.GET, "/api/orders", token: jane).status == .ok)
                #expect(hits.0.withLockedValue { $0 } == before + 1, "with no registered instance the configured URL serves")
            }
        }
    }

    @Test func anAgentRegistersItsInstanceAndDeregistersOnShutdown() async throws {
        let hits = NIOLockedValueBox(0)
        try await Self.withGateway(upstreamPort: 9) { gateway in
            let reader = try await gateway.keys.token("payment", role: .service)
            let keys = gateway.keys
            let registry = gateway.url
            let agentID = NIOLockedValueBox("")
            try await RunningService.with([
                { onServerRunning in
                    let port = AsyncStream<Int>.makeStream()
                    let server = try await Self.stub("agent", hits: hits)({ bound in
                        port.continuation.yield(bound)
                        port.continuation.finish()
                        await onServerRunning(bound)
                    })
                    let agent = RegistryAgent(
                        registryURL: registry, name: "order", host: "127.0.0.1",
                        credentials: keys.serviceTokens("order", scopes: [Scope.registryRegister]),
                        logger: Logger(label: "agent"), port: { await port.stream.first { _ in true } }
                    )
                    agentID.withLockedValue { $0 = agent.instanceID }
                    return ServiceSet([server, agent])
                }
            ]) { ports in
                try await eventually("the agent's instance to be registered", timeout: .seconds(15)) {
                    let found = try await gateway.call(.GET, "/services/order", token: reader)
                    guard found.status == .ok else { return false }
                    return try found.json(DiscoveryAnswer.self).instances.map(\.url) == ["http://127.0.0.1:\(ports[0])"]
                }
                // Through the gateway to the registered instance.
                let jane = try await gateway.keys.token("jane")
                #expect(try await gateway.call(.GET, "/api/orders", token: jane).object["instance"] as? String == "agent")
            }
            // Graceful shutdown deregistered it at once (the TTL is 15 s).
            #expect(try await gateway.call(.GET, "/services/order", token: reader).status == .notFound)
            #expect(agentID.withLockedValue { $0 }.hasPrefix("order-"))
        }
    }
}
