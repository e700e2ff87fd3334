import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import ServiceTesting
import Testing

@testable import ServiceRedis

/// The toolkit's Redis client against a real `redis-server` on loopback.
@Suite struct RedisTests {
    let logger = Logger(label: "redis-test")

    func client(_ url: String, configure: (inout RedisConfiguration) -> Void = { _ in }) throws -> RedisClient {
        var configuration = try RedisConfiguration(url: url)
        configure(&configuration)
        return RedisClient(configuration: configuration, logger: logger)
    }

    @Test func repliesOfEveryType() async throws {
        try await RedisTestServer.with { server in
            let redis = try client(server.url)
            defer { Task { await redis.close() } }
            #expect(try await redis.send("SET", "greeting", "hello") == .simpleString("OK"))
            #expect(try await redis.send("GET", "greeting") == .bulkString(ByteBuffer(string: "hello")))
            #expect(try await redis.send("GET", "missing") == .null)
            #expect(try await redis.send("INCRBY", "counter", 41) == .integer(41))
            #expect(try await redis.send("RPUSH", "list", "a", "b", "c").int == 3)
            #expect(try await redis.send("LRANGE", "list", 0, -1) == .array(["a", "b", "c"].map { .bulkString(ByteBuffer(string: $0)) }))
            _ = try await redis.send("HSET", "hash", "field", "value")
            #expect(
                try await redis.send("HGETALL", "hash")
                    == .map([(.bulkString(ByteBuffer(string: "field")), .bulkString(ByteBuffer(string: "value")))]))
            _ = try await redis.send("SADD", "set", "only")
            #expect(try await redis.send("SMEMBERS", "set") == .set([.bulkString(ByteBuffer(string: "only"))]))
            // RESP3 types from a script: double, boolean, big number, verbatim.
            let typed = try await redis.send(
                "EVAL", "redis.setresp(3); return {double = 2.5}", 0)
            #expect(typed == .double(2.5))
            #expect(try await redis.send("EVAL", "redis.setresp(3); return true", 0) == .boolean(true))
            #expect(
                try await redis.send("EVAL", "redis.setresp(3); return {big_number = '123456789012345678901234567890'}", 0)
                    == .bigNumber("123456789012345678901234567890"))
            if case .verbatim(let format, let text) = try await redis.send("LOLWUT", "VERSION", 5) {
                #expect(format == "txt" && !text.isEmpty)
            } else if case .bulkString = try await redis.send("LOLWUT", "VERSION", 5) {
                // Some builds answer a bulk string.
            } else {
                Issue.record("LOLWUT answered neither a verbatim nor a bulk string")
            }
            // Error replies are typed by their prefix.
            await #expect(throws: RedisError.self) { try await redis.send("LPUSH", "greeting", "x") }
            do {
                try await redis.send("LPUSH", "greeting", "x")
                Issue.record("LPUSH on a string answered")
            } catch RedisError.server(let kind, let message) {
                #expect(kind == .wrongType && message.hasPrefix("WRONGTYPE"))
            }
            do {
                try await redis.send("NOSUCHCOMMAND")
                Issue.record("an unknown command answered")
            } catch RedisError.server(let kind, _) {
                #expect(kind == .err)
            }
        }
    }

    /// TCP_NODELAY is a TCP-level option: set at the socket level it was SO_DEBUG, which needs CAP_NET_ADMIN (refused in a
    /// container without capabilities) and left Nagle's algorithm on.
    @Test func connectionsDisableNagleWithTheTCPOption() async throws {
        try await RedisTestServer.with { server in
            let connection = try await RedisConnection.connect(try RedisConfiguration(url: server.url))
            #expect(try await connection.channel.getOption(.tcpOption(.tcp_nodelay)).get() != 0)
            // SO_DEBUG (1 at the socket level, the number TCP_NODELAY has at the TCP level) stays off.
            #expect(try await connection.channel.getOption(.socketOption(NIOBSDSocket.Option(rawValue: 1))).get() == 0)
            try await connection.channel.close()
        }
    }

    @Test func pipelinedCommandsAnswerInOrder() async throws {
        try await RedisTestServer.with { server in
            let redis = try client(server.url) { $0.poolSize = 1 }
            defer { Task { await redis.close() } }
            let commands = (0..<1000).map { _ in ["INCR", "n"] as [RedisArgument] }
            let replies = try await redis.pipeline(commands)
            #expect(replies == (1...1000).map { .integer(Int64($0)) })
            // Concurrent callers share the connections; each gets its own reply.
            let values = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for index in 0..<200 {
                    group.addTask {
                        try await redis.send("SET", RedisArgument("k\(index)"), RedisArgument("v\(index)"))
                        return (index, try await redis.send("GET", RedisArgument("k\(index)")).string)
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(values.count == 200 && values.allSatisfy { $0.value == "v\($0.key)" })
        }
    }

    @Test func aKilledServerFailsCallsFastAndIsUsedAgainOnceBack() async throws {
        try await RedisTestServer.with { server in
            let redis = try client(server.url) {
                $0.minimumBackoff = .milliseconds(50)
                $0.maximumBackoff = .milliseconds(200)
            }
            defer { Task { await redis.close() } }
            try await redis.send("SET", "before", "1")
            await server.kill()
            // Every call fails with a typed error, quickly, while it is down.
            for _ in 0..<5 {
                let started = ContinuousClock.now
                do {
                    try await redis.send("GET", "before")
                    Issue.record("a call succeeded with the server down")
                } catch let error as RedisError {
                    #expect([.connectionClosed, .timedOut].contains(error) || { if case .unavailable = error { true } else { false } }())
                }
                #expect(ContinuousClock.now - started < .seconds(2))
            }
            try await server.start()
            // Back without a new client: the pool connects again after its backoff.
            try await eventually("the client to use the restarted server", timeout: .seconds(10)) {
                (try? await redis.send("SET", "after", "2")) == .simpleString("OK")
            }
            #expect(try await redis.send("GET", "after").string == "2")
        }
    }

    @Test func aServerThatStopsAnsweringTimesOutAndIsUsedAgainWhenItResumes() async throws {
        try await RedisTestServer.with { server in
            let redis = try client(server.url) {
                $0.commandTimeout = .milliseconds(300)
                $0.minimumBackoff = .milliseconds(50)
                $0.poolSize = 1
            }
            defer { Task { await redis.close() } }
            try await redis.send("SET", "k", "v")
            server.pause()
            let started = ContinuousClock.now
            await #expect(throws: RedisError.timedOut) { try await redis.send("GET", "k") }
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(300) && waited < .seconds(2), "waited \(waited)")
            server.resume()
            try await eventually("a new connection after the timeout", timeout: .seconds(10)) {
                (try? await redis.send("GET", "k"))?.string == "v"
            }
        }
    }

    @Test func authenticationDatabaseAndAWrongPassword() async throws {
        try await RedisTestServer.with(["--requirepass", "s3cret", "--user", "app", "on", ">apppass", "~*", "+@all"]) { server in
            // The default user's password, and an ACL user from the URL; database 2.
            let plain = try client("redis://:s3cret@127.0.0.1:\(server.port)/2")
            defer { Task { await plain.close() } }
            try await plain.send("SET", "where", "db2")
            let user = try client("redis://app:apppass@127.0.0.1:\(server.port)/0")
            defer { Task { await user.close() } }
            #expect(try await user.send("GET", "where") == .null)  // another database
            try await user.send("SELECT", 2)
            #expect(try await user.send("ACL", "WHOAMI").string == "app")

            let wrong = try client("redis://:nope@127.0.0.1:\(server.port)")
            defer { Task { await wrong.close() } }
            do {
                try await wrong.send("PING")
                Issue.record("a wrong password was accepted")
            } catch RedisError.server(let kind, _) {
                #expect(kind == .authentication)
            }
            let none = try client(server.url)
            defer { Task { await none.close() } }
            do {
                try await none.send("GET", "where")
                Issue.record("a client without a password was served")
            } catch RedisError.server(let kind, _) {
                #expect(kind == .authentication)
            }
        }
    }

    /// A caller with a shorter deadline than the connection's gives up alone: the commands pipelined beside it and the
    /// connection carry on; only a server silent past the connection's own timeout closes it.
    @Test func anImpatientCallerDoesNotBreakTheConnectionForOthers() async throws {
        try await RedisTestServer.with { server in
            let redis = try client(server.url) {
                $0.poolSize = 1
                $0.commandTimeout = .seconds(2)
            }
            defer { Task { await redis.close() } }
            try await redis.send("SET", "k", "v")
            // A blocking pop that waits 300 ms holds the connection's queue; a 50 ms caller behind it gives up.
            async let patient = redis.send(["BLPOP", "nothing", "0.3"])
            try await Task.sleep(for: .milliseconds(20))  // lets BLPOP go first on the connection
            await #expect(throws: RedisError.timedOut) { try await redis.send(["GET", "k"], timeout: .milliseconds(50)) }
            #expect(try await patient == .null)
            // Same connection, still open: the dropped reply did not shift the answers.
            #expect(try await redis.send("GET", "k").string == "v")
            #expect(try await redis.send("CLIENT", "ID").int == (try await redis.send("CLIENT", "ID").int))
        }
    }

    @Test func scriptsRunByShaAndAreSentAgainAfterAFlush() async throws {
        try await RedisTestServer.with { server in
            let redis = try client(server.url)
            defer { Task { await redis.close() } }
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            #expect(try await redis.send("SCRIPT", "LOAD", RedisArgument(script.source)).string == script.sha1)
            #expect(try await redis.eval(script, keys: ["n"], arguments: [5]) == .integer(5))
            try await redis.send("SCRIPT", "FLUSH")
            #expect(try await redis.eval(script, keys: ["n"], arguments: [2]) == .integer(7))  // NOSCRIPT → EVAL
            #expect(try await redis.send("SCRIPT", "EXISTS", RedisArgument(script.sha1)) == .array([.integer(1)]))
        }
    }

    @Test func pubSubResubscribesAfterTheServerRestarts() async throws {
        try await RedisTestServer.with { server in
            let configuration = try RedisConfiguration(url: server.url)
            let received = NIOLockedValueBox<[String]>([])
            let reconnects = NIOLockedValueBox(0)
            var fast = configuration
            fast.minimumBackoff = .milliseconds(50)
            fast.maximumBackoff = .milliseconds(200)
            let subscriber = RedisSubscriber(
                configuration: fast, channels: ["news"], logger: logger, onReconnect: { reconnects.withLockedValue { $0 += 1 } }
            ) { message in
                received.withLockedValue { $0.append(String(buffer: message.payload)) }
            }
            let publisher = RedisClient(configuration: fast, logger: logger)
            defer { Task { await publisher.close() } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                let services = ServiceGroup(services: [subscriber], logger: logger)
                group.addTask { try await services.run() }
                try await eventually("the subscription") { subscriber.isSubscribed }
                #expect(try await publisher.publish("first", to: "news") == 1)
                try await eventually("the first message") { received.withLockedValue { $0 } == ["first"] }

                await server.kill()
                try await server.start()
                try await eventually("the subscription again", timeout: .seconds(10)) { subscriber.isSubscribed && subscriber.connectionCount >= 2 }
                // Said once, when the subscription was back.
                try await eventually("the reconnect to be reported") { reconnects.withLockedValue { $0 } == 1 }
                try await eventually("the client back") { (try? await publisher.publish("second", to: "news")) == 1 }
                try await eventually("the second message") { received.withLockedValue { $0 } == ["first", "second"] }
                await services.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
    }

    @Test func urlsAndTheWireFormat() throws {
        let full = try RedisConfiguration(url: "rediss://app:p%40ss@cache.internal:6380/3")
        #expect(full.host == "cache.internal" && full.port == 6380 && full.user == "app" && full.password == "p@ss" && full.database == 3)
        #expect(full.tls != nil)
        #expect(full.redacted == "rediss://app:***@cache.internal:6380/3")
        let bare = try RedisConfiguration(url: "redis://localhost")
        #expect(bare.port == 6379 && bare.database == 0 && bare.password == nil && bare.tls == nil)
        #expect(throws: RedisConfiguration.InvalidURL.self) { try RedisConfiguration(url: "http://localhost") }
        #expect(throws: RedisConfiguration.InvalidURL.self) { try RedisConfiguration(url: "redis://localhost/x") }

        var buffer = ByteBuffer()
        buffer.writeRedisCommand(["SET", "k", RedisArgument(ByteBuffer(bytes: [0, 13, 10]))])
        #expect(String(buffer: buffer) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\0\r\n\r\n")

        // A reply split anywhere decodes only once whole; nonsense is an error, not a crash.
        let reply = "*2\r\n$5\r\nhello\r\n%1\r\n+k\r\n:7\r\n"
        var decoder = RESPDecoder()
        for cut in 0..<reply.utf8.count {
            var partial = ByteBuffer(string: String(reply.utf8.prefix(cut))!)
            #expect(try decoder.decode(buffer: &partial) == nil)
        }
        var whole = ByteBuffer(string: reply)
        #expect(try decoder.decode(buffer: &whole) == .array([.bulkString(ByteBuffer(string: "hello")), .map([(.simpleString("k"), .integer(7))])]))
        #expect(whole.readableBytes == 0)
        var nonsense = ByteBuffer(string: "?what\r\n")
        #expect(throws: RESPProtocolError.self) { try decoder.decode(buffer: &nonsense) }
        var deep = ByteBuffer(string: String(repeating: "*1\r\n", count: 100) + ":1\r\n")
        #expect(throws: RESPProtocolError.self) { try decoder.decode(buffer: &deep) }
    }
}

extension RedisTests {
    @Test func rediss() async throws {
        try await RedisTestServer.with(tls: true) { server in
            let certificate = try #require(server.tls?.certificate)
            let redis = RedisClient(configuration: try RedisConfiguration(url: server.url, caFile: certificate), logger: logger)
            defer { Task { await redis.close() } }
            try await redis.send("SET", "secure", "yes")
            #expect(try await redis.send("GET", "secure").string == "yes")
            // Without the CA the server's certificate is refused, and no command goes out in clear.
            let untrusting = RedisClient(configuration: try RedisConfiguration(url: server.url), logger: logger)
            defer { Task { await untrusting.close() } }
            await #expect(throws: RedisError.self) { try await untrusting.send("GET", "secure") }
            let plain = RedisClient(configuration: try RedisConfiguration(url: "redis://localhost:\(server.port)"), logger: logger)
            defer { Task { await plain.close() } }
            await #expect(throws: RedisError.self) { try await plain.send("GET", "secure") }
        }
    }
}
