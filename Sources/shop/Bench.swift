import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SQLKit
import ServiceDatabase
import ServiceLifecycle
import ServiceMessaging
import ServiceResilience

/// `shop bench …`: benchmarks that print figures (never run as tests).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a benchmark and print its figures.", subcommands: [Events.self, Checkout.self, Soak.self, Policies.self])

    /// Runs `body` for 0..<count on `width` concurrent tasks (each takes the next number when it is free).
    static func concurrently(_ count: Int, width: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        let next = NIOLockedValueBox(0)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for _ in 0..<max(width, 1) {
                tasks.addTask {
                    while true {
                        let n = next.withLockedValue { value -> Int in
                            defer { value += 1 }
                            return value
                        }
                        guard n < count else { return }
                        try await body(n)
                    }
                }
            }
            try await tasks.waitForAll()
        }
    }

    /// Sends `json` with `method` to `url` (with a bearer `token`), answering the status and body.
    static func call(
        _ client: HTTPClient, _ method: HTTPMethod, _ url: String, json: String, token: String? = nil
    ) async throws -> (status: HTTPResponseStatus, body: ByteBuffer) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "content-type", value: "application/json")
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        request.body = .bytes(ByteBuffer(string: json))
        let response = try await client.execute(request, timeout: .seconds(60))
        return (response.status, try await response.body.collect(upTo: 1 << 20))
    }

    /// `shop bench events`: the event bus against its engine's raw commit rate, in one run.
    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish→handle latency and throughput of the event bus (outbox → relay → log → consumer), beside the engine's raw commit rate."
        )

        @Option(help: "A postgres:// URL to measure PostgreSQL; SQLite files in a temporary folder otherwise.")
        var database = ""

        @Option(help: "Events in the throughput run (also the number of raw commits).")
        var events = 2000

        @Option(help: "Events per second in the latency run.")
        var rate = 100

        @Option(help: "Least milliseconds between two busy passes of the relay (its batching linger; the default is the relay's).")
        var lingerMs = 10

        @Option(help: "The same for the consumer, whose passes take one event per partition key (the default is the consumer's).")
        var consumerLingerMs = 5

        @Option(help: "Concurrent publishers in the throughput run (and concurrent committers in the raw run).")
        var publishers = 1

        @Option(help: "Distinct partition keys (a group handles one event per key at a time, in order).")
        var keys = 16

        @Option(help: "Events in the latency run.")
        var latencyEvents = 300

        struct Sent: Codable {
            var n: Int
            var sentAt: Double
        }

        func run() async throws {
            var logger = Logger(label: "bench")
            logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .error
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-bench-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let suffix = UUID().uuidString.prefix(8).lowercased()
            let postgres = database.hasPrefix("postgres")
            let separator = database.contains("?") ? "&" : "?"
            let serviceURL = postgres ? "\(database)\(separator)schema=bench_\(suffix)_service" : ""
            let logURL = postgres ? "\(database)\(separator)schema=bench_\(suffix)_log" : ""

            let service = try await Database.open(
                try DatabaseConfiguration(url: serviceURL, service: "bench", dataDirectory: directory), logger: logger)
            let log = try await EventLog.open(url: logURL, dataDirectory: directory, logger: logger)
            let latencies = LatencyRecorder()
            var handlers = EventHandlers()
            handlers.on("bench.sent", as: Sent.self) { sent, _, _ in latencies.record(sent) }
            let consumer = EventConsumer(
                group: "bench", log: log, database: service, handlers: handlers,
                configuration: ConsumerConfiguration(prefetch: 64, pollInterval: .milliseconds(50), linger: .milliseconds(consumerLingerMs)),
                logger: logger
            )
            let relay = OutboxRelay(database: service, log: log, logger: logger, batchSize: 200, linger: .milliseconds(lingerMs))
            let group = ServiceGroup(services: service.services + log.services + [relay, consumer], logger: logger)

            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                defer { tasks.cancelAll() }
                try await service.prepare(
                    migrations: MessagingMigrations.all + [
                        Migration(version: 1, name: "bench rows", statements: ["CREATE TABLE bench_rows (id TEXT PRIMARY KEY, n BIGINT NOT NULL)"])
                    ]
                )
                try await log.prepare()
                try await consumer.declare()
                print(
                    "engine: \(postgres ? "PostgreSQL" : "SQLite (WAL, synchronous=NORMAL)"); \(ProcessInfo.processInfo.activeProcessorCount) cores; "
                        + "linger: relay \(lingerMs) ms, consumer \(consumerLingerMs) ms"
                )

                // 1. The engine's own rate of single-row committed transactions (measured again after the throughput run;
                // the ratio is against the mean of both, as this shared machine's speed drifts).
                let rawBefore = try await rawCommitRate(service: service, prefix: "raw-a-")
                print(String(format: "raw commits:        %8.0f /s  (%d single-row transactions, %d at a time)", rawBefore, events, publishers))

                // 2. Latency at a moderate, paced rate: each event is a state change + outbox row in one transaction.
                latencies.reset(expect: latencyEvents)
                let interval = Duration.seconds(1) / rate
                var next = ContinuousClock.now
                for n in 0..<latencyEvents {
                    try await publish(n: n, service: service, relay: relay)
                    next += interval
                    try await Task.sleep(until: next)
                }
                try await latencies.waitForAll(timeout: .seconds(60))
                let paced = latencies.percentiles()
                print(
                    String(
                        format: "latency @ %d/s:     p50 %.2f ms  p99 %.2f ms  max %.2f ms  (publish commit → handler, %d events)", rate, paced.p50,
                        paced.p99, paced.max, latencyEvents))

                // 3. Throughput: publish as fast as the publishers commit, until every event is handled.
                latencies.reset(expect: events)
                relay.passes.withLockedValue { $0 = (0, 0) }
                consumer.passes.withLockedValue { $0 = (0, 0) }
                let start = ContinuousClock.now
                try await concurrently(events) { n in
                    try await publish(n: 1_000_000 + n, service: service, relay: relay)
                }
                let publishRate = Double(events) / (ContinuousClock.now - start).inSeconds
                try await latencies.waitForAll(timeout: .seconds(300))
                let throughput = Double(events) / (ContinuousClock.now - start).inSeconds
                let burst = latencies.percentiles()
                let rawAfter = try await rawCommitRate(service: service, prefix: "raw-b-")
                let commitRate = (rawBefore + rawAfter) / 2
                print(String(format: "raw commits again:  %8.0f /s  (mean %.0f /s)", rawAfter, commitRate))
                print(
                    String(
                        format: "throughput:         %8.0f events/s end to end  (%.0f%% of the raw commit rate; p50 %.1f ms, p99 %.1f ms under load)",
                        throughput, 100 * throughput / commitRate, burst.p50, burst.p99))
                print(
                    String(format: "  publisher alone:  %8.0f commits/s (state change + outbox row, while the relay and consumer run)", publishRate))
                let (relayPasses, relayed) = relay.passes.withLockedValue { $0 }
                let (consumerPasses, consumed) = consumer.passes.withLockedValue { $0 }
                print(
                    String(
                        format: "  batches:          relay %.1f events per pass (%d passes), consumer %.1f (%d passes)",
                        Double(relayed) / Double(max(relayPasses, 1)), relayPasses, Double(consumed) / Double(max(consumerPasses, 1)), consumerPasses)
                )
                await group.triggerGracefulShutdown()
            }
            if postgres {
                print("(schemas bench_\(suffix)_service and bench_\(suffix)_log were left in the database)")
            }
        }

        /// Commits per second of `events` single-row transactions.
        func rawCommitRate(service: Database, prefix: String) async throws -> Double {
            let start = ContinuousClock.now
            try await concurrently(events) { n in
                try await service.transaction { sql in
                    try await sql.raw("INSERT INTO bench_rows (id, n) VALUES (\(bind: "\(prefix)\(n)"), \(bind: n))").run()
                }
            }
            return Double(events) / (ContinuousClock.now - start).inSeconds
        }

        /// Runs `body` for 0..<count on `publishers` concurrent tasks.
        func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
            try await Bench.concurrently(count, width: publishers, body)
        }

        func publish(n: Int, service: Database, relay: OutboxRelay) async throws {
            let event = try EventEnvelope(
                type: "bench.sent", source: "bench", partitionKey: "k\(n % keys)", payload: Sent(n: n, sentAt: Date.now.timeIntervalSince1970)
            )
            try await service.transaction { sql in
                try await sql.raw("INSERT INTO bench_rows (id, n) VALUES (\(bind: "ev-\(n)"), \(bind: n))").run()
                try await Outbox.add(event, in: sql)
            }
            relay.wakeup.signal()
        }
    }
}

/// Collects publish→handle latencies and lets the benchmark wait until all expected events arrived.
final class LatencyRecorder: Sendable {
    private struct State {
        var values: [Double] = []
        var expected = 0
    }

    private let state = NIOLockedValueBox(State())

    func reset(expect count: Int) {
        state.withLockedValue { $0 = State(values: [], expected: count) }
    }

    func record(_ sent: Bench.Events.Sent) {
        let milliseconds = (Date.now.timeIntervalSince1970 - sent.sentAt) * 1000
        state.withLockedValue { $0.values.append(milliseconds) }
    }

    func waitForAll(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while state.withLockedValue({ $0.values.count < $0.expected }) {
            guard ContinuousClock.now < deadline else { throw ValidationError("not every event was handled in time") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func percentiles() -> (p50: Double, p99: Double, max: Double) {
        let sorted = state.withLockedValue { $0.values.sorted() }
        guard !sorted.isEmpty else { return (0, 0, 0) }
        func at(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] }
        return (at(0.5), at(0.99), sorted.last ?? 0)
    }
}
