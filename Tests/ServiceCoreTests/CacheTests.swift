import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceDatabase
import ServiceLifecycle
import ServiceMessaging
import ServiceRedis
import ServiceTesting
import Testing

@testable import ServiceCache

@Suite struct CacheTests {
    let logger = Logger(label: "cache-test")

    struct Product: Codable, Sendable, Equatable {
        var id: String
        var price: Int
    }

    /// A source that counts its loads and answers what `prices` holds.
    final class Source: Sendable {
        let prices = NIOLockedValueBox<[String: Int]>([:])
        let loads = NIOLockedValueBox(0)

        func load(_ id: String) -> Product? {
            loads.withLockedValue { $0 += 1 }
            return prices.withLockedValue { $0[id] }.map { Product(id: id, price: $0) }
        }

        var loadCount: Int { loads.withLockedValue { $0 } }
    }

    @Test func theInProcessLevelEvictsTheLeastRecentlyUsedWithinBothBounds() {
        var store = LRUStore<Int>(maxEntries: 3, maxBytes: 100)
        func entry(_ value: Int, bytes: Int = 10, tags: [String] = []) -> LRUStore<Int>.Entry {
            .init(value: value, bytes: bytes, freshUntil: .seconds(1), staleUntil: .seconds(1), tags: tags)
        }
        store.set("a", entry(1, tags: ["even"]))
        store.set("b", entry(2))
        store.set("c", entry(3, tags: ["even"]))
        #expect(store.get("a")?.value == 1)  // a is now the most recent
        #expect(store.set("d", entry(4)) == 1)  // over 3 entries: b, the least recent, goes
        #expect(store.keysByRecency == ["d", "a", "c"])
        #expect(store.get("b") == nil)
        // Over the byte bound: the oldest go until it holds.
        #expect(store.set("e", entry(5, bytes: 85)) == 2)
        #expect(store.keysByRecency == ["e", "d"] && store.bytes == 95)
        // Too big for the bound at all: not stored, nothing evicted.
        #expect(store.set("huge", entry(6, bytes: 101)) == 0 && store.get("huge") == nil && store.count == 2)
        store.set("f", entry(7, tags: ["even"]))
        #expect(store.remove(tag: "even") == 1 && store.keysByRecency == ["e"] && store.bytes == 85)
        #expect(store.removeAll() == 1 && store.count == 0 && store.bytes == 0)
    }

    @Test func aStampedeOfConcurrentMissesLoadsOnce() async throws {
        let cache = Cache<Product>(name: "stampede", logger: logger)
        let gate = Gate()
        let loads = NIOLockedValueBox(0)
        let entered = NIOLockedValueBox(0)
        let values = try await withThrowingTaskGroup(of: Product?.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    entered.withLockedValue { $0 += 1 }
                    return try await cache.get("p1") {
                        loads.withLockedValue { $0 += 1 }
                        await gate.wait()
                        return Product(id: "p1", price: 10)
                    }
                }
            }
            try await eventually("every reader waiting") { entered.withLockedValue { $0 } == 100 }
            gate.open()
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(values.count == 100 && values.allSatisfy { $0 == Product(id: "p1", price: 10) })
        #expect(loads.withLockedValue { $0 } == 1)
        // Every reader waited for the source (each counted a miss), which loaded once.
        #expect(cache.statistics.misses == 100 && cache.statistics.loads == 1)
    }

    @Test func valuesExpireAndNotFoundIsRememberedOnlyWhenConfigured() async throws {
        let clock = ManualClock()
        let source = Source()
        source.prices.withLockedValue { $0["p1"] = 10 }
        let plain = Cache<Product>(name: "plain", configuration: .init(timeToLive: .seconds(10)), clock: clock, logger: logger)
        #expect(try await plain.get("p1") { source.load("p1") }?.price == 10)
        source.prices.withLockedValue { $0["p1"] = 11 }
        #expect(try await plain.get("p1") { source.load("p1") }?.price == 10)  // within its time to live
        clock.advance(by: .seconds(10))
        #expect(try await plain.get("p1") { source.load("p1") }?.price == 11)  // expired: loaded again
        #expect(source.loadCount == 2)
        // "Not found" is loaded every time unless negative caching is on.
        #expect(try await plain.get("nope") { source.load("nope") } == nil)
        #expect(try await plain.get("nope") { source.load("nope") } == nil)
        #expect(source.loadCount == 4)
        let negative = Cache<Product>(
            name: "negative", configuration: .init(timeToLive: .seconds(10), negativeTimeToLive: .seconds(2)), clock: clock, logger: logger)
        #expect(try await negative.get("nope") { source.load("nope") } == nil)
        #expect(try await negative.get("nope") { source.load("nope") } == nil)
        #expect(source.loadCount == 5)
        clock.advance(by: .seconds(2))
        source.prices.withLockedValue { $0["nope"] = 1 }
        #expect(try await negative.get("nope") { source.load("nope") }?.price == 1)
        #expect(negative.statistics.hits == 1 && negative.statistics.misses == 2)
    }

    @Test func anExpiredValueIsServedWhileOneLoadRefreshesIt() async throws {
        let clock = ManualClock()
        let source = Source()
        source.prices.withLockedValue { $0["p1"] = 10 }
        let cache = Cache<Product>(
            name: "swr", configuration: .init(timeToLive: .seconds(10), staleWhileRevalidate: .seconds(30)), clock: clock, logger: logger)
        #expect(try await cache.get("p1") { source.load("p1") }?.price == 10)
        source.prices.withLockedValue { $0["p1"] = 12 }
        clock.advance(by: .seconds(15))
        // Stale: answered at once with the old value while one refresh runs in the background (held until the gate
        // opens), however many reads come meanwhile.
        let gate = Gate()
        let refresh: @Sendable () async -> Product? = {
            await gate.wait()
            return source.load("p1")
        }
        for _ in 0..<5 { #expect(try await cache.get("p1", load: refresh)?.price == 10) }
        gate.open()
        try await eventually("the refreshed value") { try await cache.get("p1", load: refresh)?.price == 12 }
        #expect(source.loadCount == 2)
        #expect(cache.statistics.staleHits >= 5)
        // Past the stale window it is a miss again.
        clock.advance(by: .seconds(41))
        source.prices.withLockedValue { $0["p1"] = 13 }
        #expect(try await cache.get("p1") { source.load("p1") }?.price == 13)
    }

    @Test func aLoadOvertakenByAnInvalidationAnswersButIsNotKept() async throws {
        let cache = Cache<Product>(name: "race", logger: logger)
        let gate = Gate()
        let started = Gate()
        let loads = NIOLockedValueBox(0)
        let reader = Task {
            try await cache.get("p1", tags: ["all"]) {
                loads.withLockedValue { $0 += 1 }
                started.open()
                await gate.wait()
                return Product(id: "p1", price: 10)  // read before the write the invalidation stands for
            }
        }
        await started.wait()
        await cache.invalidate(tags: ["all"])
        gate.open()
        #expect(try await reader.value?.price == 10)
        #expect(try await cache.get("p1") { Product(id: "p1", price: 11) }?.price == 11)
        #expect(loads.withLockedValue { $0 } == 1)
        // Keys and tags: each invalidation forgets exactly what it names.
        _ = try await cache.get("p2", tags: ["all", "cheap"]) { Product(id: "p2", price: 1) }
        _ = try await cache.get("p3", tags: ["all"]) { Product(id: "p3", price: 30) }
        await cache.invalidate(tags: ["cheap"])
        #expect(cache.size.entries == 2)
        await cache.invalidate(keys: ["p1"])
        #expect(cache.size.entries == 1)
        #expect(try await cache.get("p3") { nil }?.price == 30)
    }

    @Test func theCacheCanBeTurnedOff() async throws {
        let source = Source()
        source.prices.withLockedValue { $0["p1"] = 10 }
        let cache = Cache<Product>(name: "off", configuration: .init(enabled: false), logger: logger)
        for _ in 0..<3 { _ = try await cache.get("p1") { source.load("p1") } }
        #expect(source.loadCount == 3 && cache.size.entries == 0)
    }

    /// Two processes' caches over one Redis: the second level answers the second process, an invalidation in either
    /// empties both in-process levels and the shared one, and a Redis that dies only costs loads from the source.
    @Test func instancesShareTheSecondLevelAndEachOthersInvalidationsThroughRedis() async throws {
        try await RedisTestServer.with { redis in
            var configuration = try RedisConfiguration(url: redis.url)
            configuration.minimumBackoff = .milliseconds(50)
            configuration.maximumBackoff = .milliseconds(200)
            let source = Source()
            source.prices.withLockedValue { $0 = ["p1": 10, "p2": 20] }
            let clients = [RedisClient(configuration: configuration, logger: logger), RedisClient(configuration: configuration, logger: logger)]
            let planes = clients.map { RedisCacheBackplane(client: $0, logger: logger) }
            let processes = planes.map { Caches(backplane: $0, logger: logger) }
            let caches = processes.map { $0.cache("products", of: Product.self, configuration: .init(timeToLive: .seconds(60))) }
            let group = ServiceGroup(services: planes.flatMap(\.services), logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                try await eventually("both subscribed") { planes.allSatisfy { $0.subscriber.isSubscribed } }

                #expect(try await caches[0].get("p1", tags: ["list"]) { source.load("p1") }?.price == 10)
                // The other process finds it in Redis: no second load.
                #expect(try await caches[1].get("p1", tags: ["list"]) { source.load("p1") }?.price == 10)
                #expect(source.loadCount == 1 && caches[1].statistics.sharedHits == 1 && caches[1].size.entries == 1)

                // A change in process 0: process 1's in-process copy goes too, within the bound.
                source.prices.withLockedValue { $0["p1"] = 11 }
                let changed = ContinuousClock.now
                await caches[0].invalidate(keys: ["p1"])
                try await eventually("process 1 forgot p1", timeout: .seconds(2)) { caches[1].size.entries == 0 }
                #expect(ContinuousClock.now - changed < .milliseconds(500))
                #expect(try await caches[1].get("p1") { source.load("p1") }?.price == 11)

                // Tags reach the second level without KEYS: the tag's set names its keys.
                _ = try await caches[0].get("p2", tags: ["list"]) { source.load("p2") }
                await caches[1].invalidate(tags: ["list"])
                let keys = try await ChildProcess.output(of: ["redis-cli", "-p", String(redis.port), "--scan", "--pattern", "cache:products:k:*"])
                #expect(!keys.output.contains("p2"), "\(keys.output)")
                try await eventually("process 0 forgot p2") { caches[0].size.entries == 0 }

                // p4 in the shared level before Redis goes.
                source.prices.withLockedValue { $0["p4"] = 40 }
                _ = try await caches[0].get("p4") { source.load("p4") }
                // Redis gone: reads go to the source and answer; nothing fails. Invalidations cannot be heard now, so
                // neither process trusts what it holds: p1, invalidated by process 0, is read afresh by process 1.
                _ = try await caches[1].get("p1") { source.load("p1") }
                await redis.kill()
                try await eventually("both notice") { planes.allSatisfy { !$0.isListening } }
                source.prices.withLockedValue { $0["p1"] = 12 }
                await caches[0].invalidate(keys: ["p1"])
                #expect(try await caches[1].get("p1") { source.load("p1") }?.price == 12)
                let loadsBefore = source.loadCount
                for _ in 0..<3 { #expect(try await caches[0].get("p2") { source.load("p2") }?.price == 20) }
                #expect(source.loadCount == loadsBefore + 3)
                #expect(caches[0].statistics.bypassed == 3 && caches[1].statistics.bypassed == 1)
                // An invalidation that cannot reach Redis waits and is retried.
                source.prices.withLockedValue { $0["p4"] = 41 }
                await caches[0].invalidate(keys: ["p4"])
                #expect(caches[0].hasPendingInvalidations)
                // Back: used again without a restart, and the reconnect emptied the in-process levels (invalidations
                // sent meanwhile were lost).
                try await redis.start()
                try await eventually("both subscribed again", timeout: .seconds(10)) {
                    planes.allSatisfy { $0.subscriber.isSubscribed && $0.subscriber.connectionCount >= 2 }
                }
                try await eventually("the in-process levels emptied") { caches.allSatisfy { $0.size.entries == 0 } }
                try await eventually("the client connected again", timeout: .seconds(10)) { (try? await clients[0].send(["PING"])) != nil }
                // The invalidation made while Redis was down reached it: the old p4 is gone from the shared level.
                try await eventually("the pending invalidation sent", timeout: .seconds(10)) { !caches[0].hasPendingInvalidations }
                #expect(try await clients[0].send(["EXISTS", "cache:products:k:p4"]) == .integer(0))
                #expect(try await caches[1].get("p4") { source.load("p4") }?.price == 41)
                // And the shared level is written again.
                source.prices.withLockedValue { $0["p9"] = 9 }
                _ = try await caches[0].get("p9") { source.load("p9") }
                #expect(try await clients[0].send(["EXISTS", "cache:products:k:p9"]) == .integer(1))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            for client in clients { await client.close() }
        }
    }

    /// Without Redis: invalidations reach every process through the shared event log's table, with no second level.
    @Test(arguments: TestDatabase.available)
    func withoutRedisInvalidationsReachEveryInstanceThroughTheEventLog(_ engine: TestDatabase) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let url = engine == .postgres ? TestDatabase.postgres.freshURL(service: "eventlog") : ""
        let logs = [
            try await EventLog.open(url: url, dataDirectory: folder, logger: logger),
            try await EventLog.open(url: url, dataDirectory: folder, logger: logger),
        ]
        let planes = logs.map { EventLogCacheBackplane(log: $0, logger: logger) }
        let caches = planes.map { Caches(backplane: $0, logger: logger).cache("products", of: Product.self, configuration: .init()) }
        let group = ServiceGroup(services: logs.flatMap(\.services) + planes.flatMap(\.services), logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for log in logs { try await log.prepare() }
            let source = Source()
            source.prices.withLockedValue { $0["p1"] = 10 }
            try await eventually("both reading the table") { planes.allSatisfy(\.isListening) }
            for cache in caches { #expect(try await cache.get("p1") { source.load("p1") }?.price == 10) }
            #expect(source.loadCount == 2 && caches[1].size.entries == 1)  // no shared level: each process loads once
            source.prices.withLockedValue { $0["p1"] = 11 }
            let changed = ContinuousClock.now
            await caches[0].invalidate(keys: ["p1"])
            try await eventually("process 1 forgot p1", timeout: .seconds(2)) { caches[1].size.entries == 0 }
            #expect(ContinuousClock.now - changed < .milliseconds(500))
            #expect(try await caches[1].get("p1") { source.load("p1") }?.price == 11)
            #expect(caches[1].statistics.invalidations == 1)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        if engine == .postgres { await TestDatabase.drop([url]) }
    }
}
