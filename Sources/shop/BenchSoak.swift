import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceAuth
import ServiceLifecycle
import ServiceResilience
import ShopContracts
import ShopRuntime
import ShopSystem

extension Bench {
    /// `shop bench soak`: a long run of mixed traffic with a short retention, watching the infrastructure tables, the
    /// database files and the throughput stay flat.
    struct Soak: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Mixed traffic (signups, product updates, checkouts) with a short retention; prints table rows, file sizes and throughput at intervals."
        )

        @Option(help: "A postgres:// URL to run on PostgreSQL; SQLite files in a temporary folder otherwise.")
        var database = ""

        @Option(help: "Operations to send (a third each signups, product updates and checkouts).")
        var count = 6000

        @Option(help: "Operations in flight at a time.")
        var concurrency = 8

        @Option(help: "The services' retention (RETENTION).")
        var retention = "5s"

        @Option(help: "Seconds between two reports.")
        var every = 10

        func validate() throws {
            guard Duration.parse(retention) != nil else { throw ValidationError("--retention is not a duration: '\(retention)'") }
            guard count > 0, concurrency > 0, every > 0 else { throw ValidationError("--count, --concurrency and --every must be positive") }
        }

        func run() async throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-soak-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var system = LocalSystem(
                portBase: try Ports.freeBase(), dataDirectory: directory, databaseURL: database, adminPassword: ServiceSecrets.randomSecret(),
                logLevel: "error"
            )
            // The run sets up what it measures: no rate limit (one client sends everything), reservations that outlive it.
            system.rateLimit = "off"
            system.retention = retention
            system.extraEnvironment = ["RESERVATION_TTL_SECONDS": "3600"]
            _ = try ServiceSecrets.loadOrCreate(dataDirectory: directory, services: ServiceName.shopServices.map(\.rawValue))
            var logger = Logger(label: "bench")
            logger.logLevel = .error
            let runner = SoakRunner(
                system: system, count: count, concurrency: concurrency, every: .seconds(every), retention: Duration.parse(retention)!, logger: logger)
            try await ServiceRunner.run(system.services.map { ($0, system.environment(for: $0)) }, extra: [runner], logger: logger)
            if let failure = runner.failure.withLockedValue({ $0 }) { throw failure }
        }
    }
}

/// Sends the soak's traffic once the system is ready and reports at intervals; returns when done (stopping the system).
struct SoakRunner: Service {
    let system: LocalSystem
    let count: Int
    let concurrency: Int
    let every: Duration
    let retention: Duration
    let logger: Logger
    let failure = NIOLockedValueBox<(any Error)?>(nil)

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// Operations finished so far, and answers that were not what the operation expects.
    struct Progress {
        var done = 0
        var unexpected: [String: Int] = [:]
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await soak(client)
        } catch {
            failure.withLockedValue { $0 = error }
        }
        try? await client.shutdown()
    }

    func soak(_ client: HTTPClient) async throws {
        let gateway = system.gatewayURL
        try await Readiness.wait(for: system.services.map { system.url(of: $0) }, timeout: .seconds(120), client: client)
        _ = try await DemoCatalog.seed(gatewayURL: gateway, adminEmail: AdminAccount.email, adminPassword: system.adminPassword, client: client)
        let admin = try await Bench.call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(AdminAccount.email)","password":"\#(system.adminPassword)"}"#)
        let adminToken = try JSONDecoder().decode(TokenResponse.self, from: admin.body).token
        _ = try await Bench.call(
            client, .PUT, gateway + "/api/inventory/soak-1", json: #"{"name":"Soak Item","price":10,"stock":\#(count + 100)}"#, token: adminToken)
        let email = "soak-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        _ = try await Bench.call(client, .POST, gateway + "/api/users", json: #"{"email":"\#(email)","name":"Soak Buyer","password":"Secret123"}"#)
        let login = try await Bench.call(client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(email)","password":"Secret123"}"#)
        let token = try JSONDecoder().decode(TokenResponse.self, from: login.body).token
        let checkout =
            #"{"items":[{"productId":"soak-1","quantity":1,"price":10}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"},"paymentMethod":"card","cardDetails":{"number":"4242424242424242","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
        let runID = UUID().uuidString.prefix(6).lowercased()

        print(
            "engine: \(system.databaseURL.isEmpty ? "SQLite files" : "PostgreSQL"); retention \(retention); \(count) operations, \(concurrency) at a time; every service in this process"
        )
        let progress = NIOLockedValueBox(Progress())
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await Bench.concurrently(count, width: concurrency) { n in
                    let reply: (status: HTTPResponseStatus, body: ByteBuffer)
                    let expected: HTTPResponseStatus
                    switch n % 3 {
                    case 0:
                        reply = try await Bench.call(
                            client, .POST, gateway + "/api/users",
                            json: #"{"email":"s\#(runID)-\#(n)@example.com","name":"Soak User","password":"Secret123"}"#
                        )
                        expected = .created
                    case 1:
                        // The first update of each of 50 products creates it (201), later ones update it (200).
                        let product = "soak-p\(n % 50)"
                        reply = try await Bench.call(
                            client, .PUT, gateway + "/api/inventory/\(product)", json: #"{"name":"Soak \#(n)","price":\#(5 + n % 7),"stock":1000}"#,
                            token: adminToken
                        )
                        expected = n < 150 ? .created : .ok
                    default:
                        reply = try await Bench.call(client, .POST, gateway + "/api/checkout", json: checkout, token: token)
                        expected = .created
                    }
                    progress.withLockedValue { progress in
                        progress.done += 1
                        if reply.status != expected {
                            progress.unexpected["\(n % 3 == 0 ? "signup" : n % 3 == 1 ? "product" : "checkout") \(reply.status.code)", default: 0] +=
                                1
                        }
                    }
                }
            }
            group.addTask {
                var last = (at: ContinuousClock.now, done: 0)
                while true {
                    try await Task.sleep(for: every)
                    let now = ContinuousClock.now
                    let done = progress.withLockedValue { $0.done }
                    try await report(elapsed: start.duration(to: now), rate: Double(done - last.done) / (now - last.at).inSeconds, done: done)
                    last = (now, done)
                    if done >= count { return }
                }
            }
            try await group.waitForAll()
        }
        let unexpected = progress.withLockedValue { $0.unexpected }
        // After the traffic: the tables drain to what the retention still holds.
        let drain = retention * 2 + .seconds(10)
        print("traffic done; waiting \(drain) for the retention to catch up")
        try await Task.sleep(for: drain)
        try await report(elapsed: start.duration(to: .now), rate: 0, done: count)
        guard unexpected.isEmpty else { throw Failed(description: "unexpected answers: \(unexpected)") }
    }

    /// One line of figures: time, operations, throughput in the last interval, each table's rows, each file's size.
    func report(elapsed: Duration, rate: Double, done: Int) async throws {
        let rows = try await InfrastructureTables.rows(of: system, logger: logger)
        let sizes = InfrastructureTables.fileSizes(of: system)
        let table = rows.filter { $0.value > 0 || !$0.key.hasSuffix("outbox") }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
            separator: " ")
        let files = sizes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.database / 1024)K+\($0.value.log / 1024)K" }.joined(separator: " ")
        print(
            String(format: "t=%4.0fs ops=%6d rate=%6.1f/s | rows total %d | ", elapsed.inSeconds, done, rate, rows.values.reduce(0, +)) + table
                + (files.isEmpty ? "" : " | files (database+WAL) " + files))
    }
}
