import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SQLKit
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceHTTP
import ServiceLifecycle
import ServiceResilience
import ShopContracts
import ShopRuntime
import ShopSystem

extension Bench {
    /// `shop bench checkout`: checkouts through the gateway, beside the engine's raw commit rate, in one run.
    struct Checkout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Checkouts per second and latency through the gateway (every service in this process), beside the engine's raw commit rate."
        )

        @Option(help: "A postgres:// URL to measure PostgreSQL; SQLite files in a temporary folder otherwise.")
        var database = ""

        @Option(help: "Checkouts to measure.")
        var checkouts = 300

        @Option(help: "Checkouts in flight at a time.")
        var concurrency = 8

        func run() async throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-bench-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var system = LocalSystem(
                portBase: try Ports.freeBase(), dataDirectory: directory, databaseURL: database, adminPassword: ServiceSecrets.randomSecret(),
                logLevel: "error"
            )
            // Nothing but the benchmark's own figures: stock for every checkout, no reservation expiry during the run, and
            // no rate limit (one client sends every checkout; the limit is not what this measures).
            system.extraEnvironment = ["RESERVATION_TTL_SECONDS": "3600"]
            system.rateLimit = "off"
            _ = try ServiceSecrets.loadOrCreate(dataDirectory: directory, services: ServiceName.shopServices.map(\.rawValue))
            var logger = Logger(label: "bench")
            logger.logLevel = .error
            let runner = CheckoutRunner(system: system, checkouts: checkouts, concurrency: concurrency, logger: logger)
            try await ServiceRunner.run(system.services.map { ($0, system.environment(for: $0)) }, extra: [runner], logger: logger)
            if let failure = runner.failure.withLockedValue({ $0 }) { throw failure }
        }
    }
}

/// Runs the measurement once the system is ready, then returns (which stops the system).
struct CheckoutRunner: Service {
    let system: LocalSystem
    let checkouts: Int
    let concurrency: Int
    let logger: Logger
    let failure = NIOLockedValueBox<(any Error)?>(nil)

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await measure(client)
        } catch {
            failure.withLockedValue { $0 = error }
        }
        try? await client.shutdown()
    }

    func measure(_ client: HTTPClient) async throws {
        let gateway = system.gatewayURL
        try await Readiness.wait(for: system.services.map { system.url(of: $0) }, timeout: .seconds(120), client: client)
        _ = try await DemoCatalog.seed(gatewayURL: gateway, adminEmail: AdminAccount.email, adminPassword: system.adminPassword, client: client)
        let admin = try await call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(AdminAccount.email)","password":"\#(system.adminPassword)"}"#)
        let adminToken = try JSONDecoder().decode(TokenResponse.self, from: admin.body).token
        let stock = (checkouts + 100) * 2
        _ = try await call(
            client, .PUT, gateway + "/api/inventory/bench-1", json: #"{"name":"Bench Item","price":10,"stock":\#(stock)}"#, token: adminToken)
        let email = "bench-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        _ = try await call(client, .POST, gateway + "/api/users", json: #"{"email":"\#(email)","name":"Bench User","password":"Secret123"}"#)
        let login = try await call(client, .POST, gateway + "/api/auth/login", json: #"{"email":"\#(email)","password":"Secret123"}"#)
        let token = try JSONDecoder().decode(TokenResponse.self, from: login.body).token
        let body =
            #"{"items":[{"productId":"bench-1","quantity":1,"price":10}],"shippingAddress":{"street":"1 Main St","city":"Springfield","country":"US","zipCode":"12345"},"paymentMethod":"card","cardDetails":{"number":"4242424242424242","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#

        let postgres = system.databaseURL.hasPrefix("postgres")
        print(
            "engine: \(postgres ? "PostgreSQL" : "SQLite (WAL, synchronous=NORMAL), one file per service"); \(ProcessInfo.processInfo.activeProcessorCount) cores; every service in this process"
        )

        // The engine's raw rate of single-row committed transactions, from as many concurrent tasks.
        let raw = try await Database.open(
            try DatabaseConfiguration(url: system.databaseURL, service: "bench", dataDirectory: system.dataDirectory), logger: logger
        )
        let rawRate = try await withThrowingTaskGroup(of: Void.self) { group -> Double in
            let services = ServiceGroup(services: raw.services, logger: logger)
            group.addTask { try await services.run() }
            try await raw.prepare(migrations: [
                Migration(
                    version: 1, name: "bench rows", statements: ["CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, n BIGINT NOT NULL)"])
            ])
            let count = 2000
            let start = ContinuousClock.now
            try await Self.concurrently(count, width: concurrency) { n in
                try await raw.transaction { sql in
                    try await sql.raw("INSERT INTO bench_rows (id, n) VALUES (\(bind: UUID().uuidString), \(bind: n))").run()
                }
            }
            let rate = Double(count) / (ContinuousClock.now - start).inSeconds
            await services.triggerGracefulShutdown()
            return rate
        }
        await raw.close()
        print(String(format: "raw commits:        %8.0f /s  (single-row transactions, %d at a time)", rawRate, concurrency))

        // Warm-up, then the measured run.
        try await Self.concurrently(20, width: concurrency) { _ in
            _ = try await call(client, .POST, gateway + "/api/checkout", json: body, token: token)
        }
        let before = try Self.usage()
        let latencies = NIOLockedValueBox<[Double]>([])
        let statuses = NIOLockedValueBox<[UInt: Int]>([:])
        let start = ContinuousClock.now
        try await Self.concurrently(checkouts, width: concurrency) { _ in
            let began = ContinuousClock.now
            let reply = try await call(client, .POST, gateway + "/api/checkout", json: body, token: token)
            let elapsed = (ContinuousClock.now - began).inSeconds * 1000
            latencies.withLockedValue { $0.append(elapsed) }
            statuses.withLockedValue { $0[reply.status.code, default: 0] += 1 }
        }
        let duration = (ContinuousClock.now - start).inSeconds
        let after = try Self.usage()
        let sorted = latencies.withLockedValue { $0 }.sorted()
        func at(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] }
        let rate = Double(checkouts) / duration
        let transactions = (after.transactions - before.transactions) / Double(checkouts)
        let autocommits = (after.connectionUses - before.connectionUses) / Double(checkouts)
        print(
            String(
                format: "checkouts:          %8.1f /s  p50 %.1f ms  p99 %.1f ms  (%d checkouts, %d at a time; answers %@)",
                rate, at(0.5), at(0.99), checkouts, concurrency,
                statuses.withLockedValue { $0 }.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: ", ")))
        print(
            String(
                format: "per checkout:       %8.1f transactions + %.1f statements outside one, across all services (until shipped: events included)",
                transactions, autocommits))
        let allowed = rawRate / max(transactions, 1)
        print(String(format: "engine allows:      %8.1f checkouts/s at that many transactions each → %.0f%% reached", allowed, 100 * rate / allowed))
        guard statuses.withLockedValue({ $0[201] }) == checkouts else {
            throw Failed(description: "not every checkout completed: \(statuses.withLockedValue { $0 })")
        }
    }

    func call(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, json: String, token: String? = nil) async throws -> (
        status: HTTPResponseStatus, body: ByteBuffer
    ) {
        try await Bench.call(client, method, url, json: json, token: token)
    }

    static func concurrently(_ count: Int, width: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        try await Bench.concurrently(count, width: width, body)
    }

    /// What every service of this process has asked of its databases so far: committed transactions, and statements run
    /// outside one (`db_transactions_total`, `db_connection_uses_total`, read from the process's metrics).
    static func usage() throws -> (transactions: Double, connectionUses: Double) {
        let metrics = try PrometheusText(String(buffer: ServiceMetrics.exposition()))
        return (metrics.value("db_transactions_total", ["outcome": "committed"]), metrics.value("db_connection_uses_total"))
    }
}
