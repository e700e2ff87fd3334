import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// Breakers, fallback, registry and balancing across real processes under the supervisor.
@Suite(.serialized) struct ResilienceSystemTests {
    static let orderBody =
        #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}}"#

    /// Signs up and logs in a new customer; answers its token.
    static func customer(_ gateway: String, client: HTTPClient) async throws -> String {
        let email = "resilient-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let signup = try await InProcessShop.call(
            client, .POST, gateway + "/api/users", json: #"{"email":"\#(email)","name":"Res Ilient","password":"Secret123"}"#)
        #expect(signup.status == .created)
        return try await InProcessShop.call(client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(email)","password":"Secret123"}"#)
            .json(TokenResponse.self).token
    }

    static func log(_ system: LocalSystem, _ name: String) -> String {
        (try? String(contentsOfFile: system.dataDirectory + "/logs/\(name).log", encoding: .utf8)) ?? ""
    }

    @Test func stoppingThePaymentServiceOpensTheBreakerAndTheFallbackAnswersUntilItIsBack() async throws {
        _ = try await SystemTests.withSystem(.sqlite, name: "breaker", extraEnvironment: ["PAYMENT_BREAKER_OPEN_MS": "1000"]) {
            system, supervisor, client in
            let gateway = system.gatewayURL
            let token = try await Self.customer(gateway, client: client)
            let order = try await InProcessShop.call(client, .POST, gateway + "/api/orders", json: Self.orderBody, token: token).json(OrderDTO.self)
            let path = gateway + "/api/orders/\(order.id)/payment"

            let healthy = try await InProcessShop.call(client, .GET, path, token: token).json(PaymentStatusDTO.self)
            #expect(healthy == PaymentStatusDTO(orderId: order.id, status: "none", source: "payment-service", breaker: "closed"))

            supervisor.stop(.payment)
            try await eventually("the payment service to be down", timeout: .seconds(20)) {
                (try? await InProcessShop.call(client, .GET, system.url(of: .payment) + "/health/live")) == nil
            }
            // Each call answers the guide's fallback; the third failure opens the breaker.
            var answers: [PaymentStatusDTO] = []
            for _ in 0..<3 {
                let reply = try await InProcessShop.call(client, .GET, path, token: token)
                #expect(reply.status == .ok)
                answers.append(try reply.json(PaymentStatusDTO.self))
            }
            #expect(answers.allSatisfy { $0.status == "pending" && $0.source == "fallback" && $0.message == "Payment will be processed later" })
            #expect(answers.last?.breaker == "open")
            // Open: the next answer comes without asking the payment service (the order service says why).
            let fast = try await InProcessShop.call(client, .GET, path, token: token).json(PaymentStatusDTO.self)
            #expect(fast.source == "fallback" && fast.breaker == "open")
            #expect(Self.log(system, "order").contains("payment service unavailable (circuit open)"))
            // The order service's /metrics shows the open breaker and the calls it refused.
            let metrics = try PrometheusText(String(buffer: try await InProcessShop.call(client, .GET, system.url(of: .order) + "/metrics").body))
            #expect(metrics.value("circuit_breaker_open", ["target": "payment"]) == 1)
            #expect(metrics.value("service_client_requests_total", ["target": "payment", "outcome": "circuit_open"]) >= 1)
            #expect(metrics.value("circuit_breaker_transitions_total", ["scope": "service", "target": "payment", "to": "open"]) >= 1)

            supervisor.start(.payment)
            // Back: after the open period, trial calls succeed and the breaker closes.
            try await eventually("the breaker to close", timeout: .seconds(45)) {
                let status = try? await InProcessShop.call(client, .GET, path, token: token).json(PaymentStatusDTO.self)
                return status?.source == "payment-service" && status?.breaker == "closed"
            }
            let closed = try PrometheusText(String(buffer: try await InProcessShop.call(client, .GET, system.url(of: .order) + "/metrics").body))
            #expect(closed.value("circuit_breaker_open", ["target": "payment"]) == 0)
            #expect(closed.value("service_client_requests_total", ["target": "payment", "outcome": "success"]) >= 2)
            let log = Self.log(system, "order")
            #expect(log.contains(#""to":"half-open""#) || log.contains("to=half-open"))
            #expect(log.contains("Circuit breaker changed state"))
        }
    }

    @Test func killingOneOfTwoOrderInstancesFailsNoRequestBeyondTheInFlightOnes() async throws {
        let environment = ["REGISTRY_TTL_MS": "3000", "REGISTRY_CHECK_INTERVAL_MS": "500"]
        _ = try await SystemTests.withSystem(
            .sqlite, name: "replicas", extraEnvironment: environment,
            configure: {
                $0.replicas = [.order: 2]
                $0.rateLimit = "off"
            }
        ) { system, supervisor, client in
            let gateway = system.gatewayURL
            let admin = try await InProcessShop.call(
                client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(AdminAccount.email)","password":"AdminPass1"}"#
            ).json(TokenResponse.self).token
            let registered = NIOLockedValueBox<[ServiceInstance]>([])
            let lookUp: @Sendable () async throws -> [ServiceInstance] = {
                let reply = try await InProcessShop.call(client, .GET, gateway + "/services/order", token: admin)
                return reply.status == .ok ? try reply.json(DiscoveryAnswer.self).instances : []
            }
            try await eventually("both order instances to register", timeout: .seconds(30)) {
                registered.withLockedValue { $0 = [] }
                let instances = try await lookUp()
                registered.withLockedValue { $0 = instances }
                return instances.count == 2
            }
            let wellKnown = system.url(of: .order)
            guard let second = registered.withLockedValue({ $0 }).first(where: { $0.url != wellKnown }) else {
                Issue.record("no second order instance in \(registered.withLockedValue { $0 })")
                return
            }
            let token = try await Self.customer(gateway, client: client)
            #expect(try await InProcessShop.call(client, .POST, gateway + "/api/orders", json: Self.orderBody, token: token).status == .created)

            // Four clients read their orders without pause; one order instance is killed while they do.
            let concurrency = 4
            let statuses = NIOLockedValueBox<[UInt]>([])
            let stop = NIOLockedValueBox(false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        while !stop.withLockedValue({ $0 }) {
                            let status = (try? await InProcessShop.call(client, .GET, gateway + "/api/orders", token: token))?.status.code ?? 0
                            statuses.withLockedValue { $0.append(status) }
                        }
                    }
                }
                group.addTask {
                    try await eventually("traffic to flow", timeout: .seconds(20)) { statuses.withLockedValue { $0.count } >= 100 }
                    guard let pid = supervisor.processIdentifier(of: .order, replica: 1) else {
                        Issue.record("no process for the second order instance")
                        return
                    }
                    kill(pid, SIGKILL)
                    let killedAt = statuses.withLockedValue { $0.count }
                    try await eventually("traffic to go on after the kill", timeout: .seconds(20)) {
                        statuses.withLockedValue { $0.count } >= killedAt + 300
                    }
                    stop.withLockedValue { $0 = true }
                }
                try await group.waitForAll()
            }
            let all = statuses.withLockedValue { $0 }
            let failed = all.filter { $0 != 200 }
            #expect(all.count >= 400)
            #expect(failed.count <= concurrency, "failed: \(failed)")

            // The dead instance leaves the registry (heartbeats stop, health checks fail) within the TTL and a check
            // or two; the supervisor's restart registers a new one.
            let killed = ContinuousClock.now
            try await eventually("the killed instance to leave the registry", timeout: .seconds(15)) {
                try await !lookUp().contains { $0.id == second.id }
            }
            #expect(ContinuousClock.now - killed < .seconds(10))
            try await eventually("the restarted instance to register", timeout: .seconds(30)) {
                try await lookUp().count == 2
            }
        }
    }
}
