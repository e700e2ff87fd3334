import ServiceResilience

/// Rate-limit counters in Redis, so that every gateway counts against one limit per client and route group. One script
/// per decision (atomic, one round trip): a fixed window that starts with a key's first request and lasts the rate's
/// window, as ``InMemoryRateLimitStore`` counts; the key expires with its window, so Redis holds only live windows.
public struct RedisRateLimitStore: SharedRateLimitStore {
    let client: RedisClient
    let prefix: String

    static let script = RedisScript(
        """
        local count = redis.call('INCR', KEYS[1])
        local ttl = redis.call('PTTL', KEYS[1])
        if count == 1 or ttl < 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            ttl = tonumber(ARGV[1])
        end
        return {count, ttl}
        """
    )

    /// `prefix` namespaces the keys (`ratelimit:` by default), so several systems can share one Redis.
    public init(client: RedisClient, prefix: String = "ratelimit:") {
        self.client = client
        self.prefix = prefix
    }

    /// Answers within `timeout` whatever Redis does: the deadline covers getting a connection (a connect or greeting
    /// to a Redis that does not answer goes on in the background) as well as the script's reply.
    public func take(_ key: String, rate: RateLimit, timeout: Duration) async throws -> RateLimitDecision {
        try await withTimeout(timeout) { try await count(key, rate: rate, timeout: timeout) }
    }

    private func count(_ key: String, rate: RateLimit, timeout: Duration) async throws -> RateLimitDecision {
        let window = max(1, rate.window.wholeMilliseconds)
        // The window's length is part of the key: one client key under two rates counts in two windows.
        let reply = try await client.eval(
            Self.script, keys: [RedisArgument("\(prefix)\(window):\(key)")], arguments: [RedisArgument(window)], timeout: timeout)
        guard let values = reply.elements, values.count == 2, let count = values[0].int, let ttl = values[1].int else {
            throw RedisError.unexpectedReply("\(reply)")
        }
        return RateLimitDecision(
            allowed: count <= rate.limit, limit: rate.limit, remaining: max(0, rate.limit - count), resetAfter: .milliseconds(max(0, ttl)))
    }
}
