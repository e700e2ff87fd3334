import AsyncHTTPClient
import Foundation
import ServiceHTTP
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// The caches of a system of processes: two inventory instances (and, with Redis, two gateways) each caching product
/// reads; a change through one gateway reaches every instance's cache.
extension SystemTests {
    @Test(arguments: [true, false])
    func aPriceChangedThroughOneGatewayIsSeenThroughEveryGatewayAndInstance(withRedis: Bool) async throws {
        if withRedis {
            try await RedisTestServer.with { redis in try await priceChange(redis: redis) }
        } else {
            try await priceChange(redis: nil)
        }
    }

    func priceChange(redis: RedisTestServer?) async throws {
        _ = try await Self.withSystem(
            .sqlite, name: "cache",
            configure: {
                $0.redisURL = redis?.url
                $0.rateLimit = "100000/60s"
                $0.replicas = redis == nil ? [.inventory: 2] : [.inventory: 2, .gateway: 2]
            }
        ) { system, _, client in
            let status = try await eventually("every instance listed and ready", timeout: .seconds(30)) { () -> SystemStatus? in
                let status = await SystemStatus.collect(system: system, adminPassword: "AdminPass1", client: client)
                let counts = Dictionary(grouping: status.instances, by: \.service).mapValues(\.count)
                return status.ready && counts["inventory"] == 2 && counts["gateway"] == (redis == nil ? 1 : 2) ? status : nil
            }
            let gateways = status.instances.filter { $0.service == "gateway" }.map(\.url)
            let inventories = status.instances.filter { $0.service == "inventory" }.map(\.url)
            // Every inventory instance has read product-1 (several reads through each gateway reach both).
            func prices() async throws -> Set<Double> {
                var seen: Set<Double> = []
                for gateway in gateways {
                    for _ in 0..<4 {
                        let reply = try await InProcessShop.call(client, .GET, gateway + "/api/inventory/product-1")
                        #expect(reply.status == .ok)
                        seen.insert(try reply.json(ProductDTO.self).price)
                    }
                }
                return seen
            }
            #expect(try await prices() == [29.99])
            try await eventually("both inventory instances cached product-1") {
                var hits = 0.0
                for instance in inventories {
                    _ = try await InProcessShop.call(client, .GET, instance + "/inventory/product-1")
                    let metrics = try PrometheusText(String(buffer: try await InProcessShop.call(client, .GET, instance + "/metrics").body))
                    hits += metrics.value("cache_requests_total", ["cache": "inventory-products", "result": "hit"]) > 0 ? 1 : 0
                }
                return hits == 2
            }

            let login = try await InProcessShop.call(
                client, .POST, gateways[0] + "/api/auth/login", json: #"{"email":"\#(AdminAccount.email)","password":"AdminPass1"}"#)
            let token = try login.json(TokenResponse.self).token
            func setPrice(_ price: Double, through gateway: String) async throws -> ContinuousClock.Instant {
                let put = try await InProcessShop.call(
                    client, .PUT, gateway + "/api/inventory/product-1", json: #"{"name":"Wireless Mouse","price":\#(price),"stock":100}"#,
                    token: token)
                #expect(put.status == .ok)
                return .now
            }
            let changed = try await setPrice(31.5, through: gateways.last!)
            try await eventually("the new price everywhere", timeout: .seconds(5)) { try await prices() == [31.5] }
            let delay = ContinuousClock.now - changed
            print("price change seen through every gateway and instance after \(delay) (\(redis == nil ? "event log" : "Redis"))")
            #expect(delay < .seconds(1))

            guard let redis else { return }
            // Redis killed: the system keeps answering (reads from the database, limits by their policy), and a change
            // is still seen everywhere: no instance trusts a copy while it cannot hear invalidations.
            await redis.kill()
            _ = try await setPrice(32, through: gateways[0])
            try await eventually("the price without Redis", timeout: .seconds(5)) { try await prices() == [32] }
            // Back: used again without restarting anything. The invalidation made while Redis was down is retried until
            // Redis takes it (its marker appears), and the gateways count their limits there again.
            try await redis.start()
            try await eventually("the invalidation made meanwhile sent to Redis", timeout: .seconds(20)) {
                let marker = try await ChildProcess.output(of: [
                    "redis-cli", "-p", String(redis.port), "EXISTS", "cache:inventory-products:x:product:product-1",
                ])
                return marker.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1"
            }
            try await eventually("the limits counted in Redis again", timeout: .seconds(20)) {
                _ = try await prices()
                let keys = try await ChildProcess.output(of: ["redis-cli", "-p", String(redis.port), "--scan", "--pattern", "ratelimit:*"])
                return !keys.output.isEmpty
            }
            _ = try await setPrice(33, through: gateways[1])
            try await eventually("the price with Redis back", timeout: .seconds(5)) { try await prices() == [33] }
        }
    }
}
