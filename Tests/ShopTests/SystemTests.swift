import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceCore
import ServiceHTTP
import ServiceLifecycle
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// The system as `shop up` runs it: every service its own OS process (`shop serve NAME`) under the supervisor.
@Suite(.serialized) struct SystemTests {
    /// The `shop` binary built next to this test bundle.
    static var shopExecutable: URL {
        let testBinary = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        return testBinary.deletingLastPathComponent().appendingPathComponent("shop")
    }

    /// A port base whose seven ports are free now.
    static func freePortBase() throws -> Int { try Ports.freeBase() }

    func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    /// Runs the whole system as processes under the supervisor (seeded, ready), calls `body`, stops it gracefully and
    /// answers the service processes' ids as they were before the stop. Data folder and database are dropped after.
    static func withSystem(
        _ engine: TestDatabase, name: String, extraEnvironment: [String: String] = [:], configure: (inout LocalSystem) -> Void = { _ in },
        _ body: @Sendable (LocalSystem, Supervisor, HTTPClient) async throws -> Void
    ) async throws -> [Int32] {
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-\(name)-\(UUID().uuidString)").path
        let database = engine == .postgres ? try await TestDatabase.createPostgresDatabase() : nil
        defer { if ProcessInfo.processInfo.environment["KEEP_TEST_DATA"] == nil { try? FileManager.default.removeItem(atPath: dataDirectory) } }
        var system = LocalSystem(
            portBase: try freePortBase(), dataDirectory: dataDirectory, databaseURL: database?.url ?? "", adminPassword: "AdminPass1",
            logLevel: "info"
        )
        system.extraEnvironment = extraEnvironment
        // The test run's Redis, if it has one (a test may set its own, or none).
        if let redis = TestRedis.url {
            system.redisURL = redis
            system.extraEnvironment["REDIS_KEY_PREFIX"] = TestRedis.freshPrefix()
        }
        configure(&system)
        // A test that brought its own Redis uses it without the shared run's prefix.
        if system.redisURL != TestRedis.url { system.extraEnvironment["REDIS_KEY_PREFIX"] = nil }
        let supervisor = Supervisor(
            system: system, executable: shopExecutable, logger: Logger(label: "supervisor"), gracePeriod: .seconds(5),
            logDirectory: dataDirectory + "/logs"
        )
        let group = ServiceGroup(services: [supervisor], logger: Logger(label: "test"))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let pids = try await withThrowingTaskGroup(of: Void.self) { tasks -> [Int32] in
            tasks.addTask { try await group.run() }
            do {
                try await Readiness.wait(for: system.services.map { system.url(of: $0) }, timeout: .seconds(60), client: client)
                try await DemoCatalog.seed(gatewayURL: system.gatewayURL, adminEmail: AdminAccount.email, adminPassword: "AdminPass1", client: client)
                try await body(system, supervisor, client)
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                try? await client.shutdown()
                if let database { await TestDatabase.dropPostgresDatabase(database.name) }
                throw error
            }
            let pids = system.services.compactMap { supervisor.processIdentifier(of: $0) }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            // Every process stopped on SIGTERM (deregistering, draining), none had to be killed.
            #expect(supervisor.forcedKills == 0)
            return pids
        }
        try await client.shutdown()
        if let database { await TestDatabase.dropPostgresDatabase(database.name) }
        return pids
    }

    /// `shop up --redis … --replicas gateway=2`: two gateway processes count one rate limit in Redis, and `shop status
    /// --json` lists both (the second on a free port) with every other instance.
    @Test func twoGatewaysOfASystemShareTheirLimitsInRedisAndStatusListsThem() async throws {
        try await RedisTestServer.with { redis in
            _ = try await Self.withSystem(
                .sqlite, name: "redis",
                configure: {
                    $0.redisURL = redis.url
                    $0.rateLimit = "30/60s"
                    $0.replicas = [.gateway: 2]
                }
            ) { system, _, client in
                // The second gateway registers itself in the shared registry once it listens.
                let status = try await eventually("both gateways listed and every instance ready", timeout: .seconds(30)) { () -> SystemStatus? in
                    let status = await SystemStatus.collect(system: system, adminPassword: "AdminPass1", client: client)
                    return status.ready && status.instances.filter { $0.service == "gateway" }.count == 2 ? status : nil
                }
                #expect(status.registry == "read")
                let gateways = status.instances.filter { $0.service == "gateway" }.map(\.url)
                #expect(gateways.contains(system.gatewayURL))
                let second = try #require(gateways.first { $0 != system.gatewayURL })
                #expect(Set(status.instances.map(\.service)).isSuperset(of: ServiceName.implemented.map(\.rawValue)))
                // The command prints the same as JSON.
                let printed = try await ChildProcess.output(
                    of: [Self.shopExecutable.path, "status", "--json", "--port-base", String(system.portBase), "--data-dir", system.dataDirectory],
                    environment: ["SHOP_ADMIN_PASSWORD": "AdminPass1"])
                let decoded = try JSONDecoder().decode(SystemStatus.self, from: Data(printed.output.utf8))
                #expect(decoded.instances.filter { $0.service == "gateway" }.map(\.url).sorted() == gateways.sorted())
                #expect(decoded.registry == "read" && decoded.ready && printed.status == 0)
                // And as a table: a line per instance, every name and URL whole ("payment-provider", "notification").
                let table = try await ChildProcess.output(
                    of: [Self.shopExecutable.path, "status", "--port-base", String(system.portBase), "--data-dir", system.dataDirectory],
                    environment: ["SHOP_ADMIN_PASSWORD": "AdminPass1"])
                let lines = table.output.split(separator: "\n")
                #expect(lines.count == decoded.instances.count, "\(table.output)")
                for instance in decoded.instances {
                    #expect(
                        lines.contains { $0.hasPrefix(instance.service + " ") && $0.contains(" " + instance.url + " ") && $0.hasSuffix("ready") },
                        "\(instance.service) \(instance.url) in \(table.output)")
                }

                // Seeding the catalog read some products from this address already: the first answer says what is left.
                let first = try await InProcessShop.call(client, .GET, system.gatewayURL + "/api/inventory/product-1")
                #expect(first.status == .ok)
                let left = try #require(Int(first.headers.first(name: "ratelimit-remaining") ?? ""))
                #expect(left < 30)
                // Alternating between the gateways: together they admit exactly what one limit leaves.
                var statuses: [Int] = []
                for index in 0...left {
                    let gateway = index.isMultiple(of: 2) ? second : system.gatewayURL
                    statuses.append(Int(try await InProcessShop.call(client, .GET, gateway + "/api/inventory/product-1").status.code))
                }
                #expect(statuses.dropLast().allSatisfy { $0 == 200 } && statuses.last == 429, "\(statuses)")
                let keys = try await ChildProcess.output(of: ["redis-cli", "-p", String(redis.port), "--scan", "--pattern", "ratelimit:*"])
                #expect(keys.output.contains("inventory|ip:127.0.0.1"), "\(keys.output)")
            }
        }
    }

    @Test func severalGatewaysWithoutASharedStoreAreRefused() async throws {
        var system = LocalSystem(adminPassword: "x")
        system.replicas = try LocalSystem.parseReplicas("gateway=2,order=2")
        #expect(system.instances(of: .gateway) == 2)
        #expect(throws: LocalSystem.GatewaysNeedRedis.self) { try system.checkSharedState() }
        system.redisURL = "redis://127.0.0.1:6379"
        try system.checkSharedState()
        // The command refuses before starting anything, and says why.
        let refused = try await ChildProcess.output(of: [
            "/bin/sh", "-c", #""$0" up --replicas gateway=2 --data-dir /nonexistent/shop 2>&1"#, Self.shopExecutable.path,
        ])
        #expect(refused.status != 0)
        #expect(refused.output.contains("--redis"), "\(refused.output)")
    }

    @Test(arguments: TestDatabase.available)
    func theGuidesFlowAcrossRealProcesses(_ engine: TestDatabase) async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.shopExecutable.path), "build the package first: swift build --build-tests")
        // At debug level, so the log scan below sees everything a service might write.
        let pids = try await Self.withSystem(engine, name: "system", configure: { $0.logLevel = "debug" }) { system, supervisor, client in
            let orderID = try await walk(system: system, client: client, logs: system.dataDirectory + "/logs")
            try await logsHoldNoSecrets(system: system, client: client, token: orderID.token)
            if engine == .sqlite {
                try await restartKeepsData(system: system, supervisor: supervisor, client: client, orderID: orderID.order, token: orderID.token)
            }
        }
        // Every service process is gone after a graceful stop.
        #expect(pids.count == ServiceName.implemented.count)
        #expect(pids.allSatisfy { !isAlive($0) })
    }

    /// Sign up → log in → read own user → order `product-1` → read it back, with one correlation id per step visible
    /// in the responses and in the services' own logs.
    func walk(system: LocalSystem, client: HTTPClient, logs: String) async throws -> (order: String, token: String) {
        let gateway = system.gatewayURL
        let runID = UUID().uuidString.prefix(8).lowercased()
        let email = "walker-\(runID)@example.com"

        let signup = try await InProcessShop.call(
            client, .POST, gateway + "/api/users", json: #"{"email":"\#(email)","name":"Walker","password":"Secret123"}"#,
            headers: [("x-correlation-id", "signup-\(runID)")]
        )
        #expect(signup.status == .created)
        #expect(signup.headers.first(name: "x-correlation-id") == "signup-\(runID)")
        let user = try signup.json(UserDTO.self)

        let login = try await InProcessShop.call(client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(email)","password":"Secret123"}"#)
        #expect(login.status == .ok)
        let token = try login.json(TokenResponse.self).token

        let me = try await InProcessShop.call(client, .GET, gateway + "/api/users/\(user.id)", token: token)
        #expect(try me.json(UserDTO.self).email == email)

        let order = try await InProcessShop.call(
            client, .POST, gateway + "/api/orders",
            json:
                #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"}}"#,
            token: token, headers: [("x-correlation-id", "order-\(runID)")]
        )
        #expect(order.status == .created)
        #expect(order.headers.first(name: "x-correlation-id") == "order-\(runID)")
        let placed = try order.json(OrderDTO.self)
        #expect(placed.totalAmount == 29.99 && placed.status == "pending")

        let readBack = try await InProcessShop.call(client, .GET, gateway + "/api/orders/\(placed.id)", token: token)
        // The same order; only its customer may have arrived since (the user.created replica is eventually there).
        var readBackOrder = try readBack.json(OrderDTO.self)
        #expect(readBackOrder.customer == nil || readBackOrder.customer?.email == email)
        readBackOrder.customer = placed.customer
        #expect(readBackOrder == placed)

        // Data synchronisation across processes: a rename through the gateway reaches the order service's replica
        // (shown on the order) and the notification service's replica, within a bounded time.
        let renamed = try await InProcessShop.call(
            client, .PATCH, gateway + "/api/users/\(user.id)", json: #"{"name":"Walker Renamed"}"#, token: token)
        #expect(renamed.status == .ok)
        try await eventually("both replicas to have the new name", timeout: .seconds(15)) {
            let order = try await InProcessShop.call(client, .GET, gateway + "/api/orders/\(placed.id)", token: token)
            let recipient = try await InProcessShop.call(client, .GET, gateway + "/api/notifications/recipients/\(user.id)", token: token)
            return (try? order.json(OrderDTO.self).customer?.name) == "Walker Renamed" && (try? recipient.json(Contact.self).name) == "Walker Renamed"
        }

        // The guide's integration flow, finished across processes: pay (200, completed), then the order reads `paid`
        // and `shipped` (eventually consistent), and each step was mailed as an .eml file.
        let payment = try await InProcessShop.call(
            client, .POST, gateway + "/api/payments",
            json:
                #"{"orderId":"\#(placed.id)","amount":29.99,"paymentMethod":"credit_card","cardDetails":{"number":"4111111111111111","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#,
            token: token
        )
        #expect(payment.status == .ok)
        #expect(try payment.json(PaymentDTO.self).status == "completed")
        let statuses = NIOLockedValueBox<[String]>([])
        try await eventually("the order to be shipped", timeout: .seconds(20)) {
            let status = try await InProcessShop.call(client, .GET, gateway + "/api/orders/\(placed.id)", token: token).json(OrderDTO.self).status
            statuses.withLockedValue { if $0.last != status { $0.append(status) } }
            return status == "shipped"
        }
        // Each status the order was seen in is a step of the machine, in order.
        let seen = statuses.withLockedValue { $0 }
        #expect(seen.allSatisfy { ["pending", "paid", "shipped"].contains($0) } && seen.last == "shipped", "\(seen)")
        let mail = system.dataDirectory + "/mail"
        try await eventually("three mails", timeout: .seconds(20)) {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: mail)) ?? []
            return Set(files) == Set(["order-confirmed", "payment-processed", "order-shipped"].map { "\($0)-\(placed.id).eml" })
        }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: mail)) ?? [] {
            let text = (try? String(contentsOfFile: mail + "/" + file, encoding: .utf8)) ?? ""
            #expect(text.contains("<\(email)>\r\n"), "\(file)")
            #expect(!text.contains("4111111111111111"))
        }

        // The messaging metrics moved: the queue's consumer handled the three mails, the user service's relay moved its
        // events, and the queue depth and outbox lag are sampled (strict Prometheus text on every service).
        let notificationMetrics = try PrometheusText(
            String(buffer: try await InProcessShop.call(client, .GET, system.url(of: .notification) + "/metrics").body)
        )
        #expect(notificationMetrics.value("events_handled_total", ["group": "order-notifications", "outcome": "handled"]) >= 3)
        #expect(notificationMetrics.types["event_deliveries_pending"] == "gauge")
        let userMetrics = try PrometheusText(String(buffer: try await InProcessShop.call(client, .GET, system.url(of: .user) + "/metrics").body))
        #expect(userMetrics.value("outbox_relayed_events_total") >= 1)
        #expect(userMetrics.types["outbox_pending_events"] == "gauge")
        #expect(userMetrics.value("db_transactions_total", ["outcome": "committed"]) >= 1)
        #expect(userMetrics.types["db_connections_in_use"] == "gauge")
        #expect(userMetrics.value("db_transaction_duration_seconds_count") >= 1)
        #expect(userMetrics.value("http_server_requests_total", ["service": "user", "route": "/users", "method": "POST", "status": "201"]) >= 1)

        // The ids reached the services' own JSON logs (the order one through the gateway and on to the order service).
        let userLog = (try? String(contentsOfFile: logs + "/user.log", encoding: .utf8)) ?? ""
        let orderLog = (try? String(contentsOfFile: logs + "/order.log", encoding: .utf8)) ?? ""
        #expect(userLog.contains(#""correlationId":"signup-\#(runID)""#))
        #expect(orderLog.contains(#""correlationId":"order-\#(runID)""#))
        // Each process the order went through logged it once at info, with its route template, status and duration.
        let gatewayLog = (try? String(contentsOfFile: logs + "/gateway.log", encoding: .utf8)) ?? ""
        func requestLines(_ log: String, _ correlation: String) -> [Substring] {
            log.split(separator: "\n").filter { $0.contains(#""message":"Request""#) && $0.contains(#""correlationId":"\#(correlation)""#) }
        }
        for (log, route) in [(gatewayLog, "/api/orders"), (orderLog, "/orders")] {
            let lines = requestLines(log, "order-\(runID)")
            #expect(lines.count == 1, "\(route): \(lines)")
            let line = lines.first ?? ""
            #expect(line.contains(#""route":"\#(route)""#) && line.contains(#""status":"201""#) && line.contains(#""durationMs""#), "\(line)")
            #expect(line.contains(#""level":"info""#), "\(line)")
        }
        #expect(requestLines(userLog, "signup-\(runID)").count == 1)
        return (placed.id, token)
    }

    /// After a full run (signup, logins right and wrong, a payment, a declined checkout), no log line of any service holds
    /// a password, a token, a secret, the signing key, a card number or a CVV.
    func logsHoldNoSecrets(system: LocalSystem, client: HTTPClient, token: String) async throws {
        let gateway = system.gatewayURL
        let wrong = try await InProcessShop.call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"admin@shop.local","password":"WrongGuess7"}"#)
        #expect(wrong.status == .unauthorized)
        let declined = try await InProcessShop.call(
            client, .POST, gateway + "/api/checkout",
            json:
                #"{"items":[{"productId":"product-1","quantity":1,"price":29.99}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"},"paymentMethod":"credit_card","cardDetails":{"number":"4000000000000002","expiryMonth":11,"expiryYear":2031,"cvv":"987"}}"#,
            token: token
        )
        #expect(declined.status == .paymentRequired)
        let data = system.dataDirectory
        var secrets = ["Secret123", "WrongGuess7", "AdminPass1", "4111111111111111", "4000000000000002", #"\"cvv\""#, #""cvv":"#, token, "eyJ"]
        if let key = try? String(contentsOfFile: data + "/auth/signing-key", encoding: .utf8) {
            secrets.append(key.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let clients = (try? Data(contentsOf: URL(fileURLWithPath: data + "/secrets/service-clients.json"))).flatMap {
            try? JSONSerialization.jsonObject(with: $0)
        }
        secrets += ((clients as? [String: String]) ?? [:]).values
        #expect(secrets.count > 10, "the signing key and the service secrets were found to look for")
        let logs = data + "/logs"
        let files = try FileManager.default.contentsOfDirectory(atPath: logs)
        #expect(files.count >= ServiceName.implemented.count)
        var lines = 0
        for file in files {
            let text = try String(contentsOfFile: logs + "/" + file, encoding: .utf8)
            lines += text.split(separator: "\n").count
            for secret in secrets where text.contains(secret) {
                let line = text.split(separator: "\n").first { $0.contains(secret) } ?? ""
                Issue.record("\(file) holds a secret (\(secret.prefix(6))…): \(line.prefix(300))")
            }
        }
        #expect(lines > 100, "the scan read a real run's logs")
    }

    /// A killed service is restarted by the supervisor and still has its data.
    func restartKeepsData(system: LocalSystem, supervisor: Supervisor, client: HTTPClient, orderID: String, token: String) async throws {
        let pid = try #require(supervisor.processIdentifier(of: .order))
        kill(pid, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(30)
        while supervisor.restartCount(of: .order) < 1 || supervisor.processIdentifier(of: .order) == pid {
            guard ContinuousClock.now < deadline else {
                Issue.record("the order service was not restarted")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Readiness.wait(for: [system.url(of: .order)], timeout: .seconds(30), client: client)
        let again = try await InProcessShop.call(client, .GET, system.gatewayURL + "/api/orders/\(orderID)", token: token)
        #expect(again.status == .ok)
        #expect(try again.json(OrderDTO.self).id == orderID)
    }
}
