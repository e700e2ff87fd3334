import Crypto
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import ServiceResilience
import Tracing

/// A pool of Redis connections: commands are spread over `poolSize` connections and pipelined on each; a connection
/// is made when first needed and again after it breaks, with a backoff between failed attempts during which calls fail
/// at once with ``RedisError/unavailable(_:)`` (a dead Redis never makes callers wait). Calls are traced (a client span
/// per command) and counted (`redis_commands_total` by command and outcome, `redis_command_duration_seconds`).
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    let logger: Logger
    private let eventLoopGroup: any EventLoopGroup

    private enum Slot {
        case empty
        case connecting(EventLoopFuture<RedisConnection>)
        case connected(RedisConnection)
        /// The last attempt failed (`State.failures` counts them); no attempt before `until`.
        case backoff(until: NIODeadline, reason: String)
    }

    private struct State {
        var slots: [Slot]
        var next = 0
        var failures: [Int]
        var closed = false
    }

    private let state: NIOLockedValueBox<State>

    public init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        let size = max(1, configuration.poolSize)
        self.state = NIOLockedValueBox(State(slots: Array(repeating: .empty, count: size), failures: Array(repeating: 0, count: size)))
    }

    /// Sends one command on a pooled connection; an error reply is thrown typed (``RedisError/server(_:message:)``).
    @discardableResult
    public func send(_ command: [RedisArgument], timeout: Duration? = nil) async throws -> RESPValue {
        let reply = try await pipeline([command], timeout: timeout)[0]
        if case .error(let message) = reply { throw RedisError.reply(message) }
        return reply
    }

    /// Convenience for commands of text arguments: `send("SET", "key", "value")`.
    @discardableResult
    public func send(_ arguments: RedisArgument...) async throws -> RESPValue {
        try await send(arguments)
    }

    /// Sends the commands in one write on one connection; replies in order, error replies as `.error` values.
    public func pipeline(_ commands: [[RedisArgument]], timeout: Duration? = nil) async throws -> [RESPValue] {
        let name = commands.count == 1 ? Self.commandName(commands[0]) : "PIPELINE"
        let start = NIODeadline.now()
        do {
            let replies = try await withSpan("redis \(name)", ofKind: .client) { span in
                span.attributes["db.system"] = "redis"
                span.attributes["server.address"] = configuration.host
                span.attributes["server.port"] = configuration.port
                if commands.count > 1 { span.attributes["db.operation.batch.size"] = commands.count }
                let connection = try await connection()
                return try await connection.pipeline(commands, timeout: timeout)
            }
            record(name, outcome: "ok", since: start)
            return replies
        } catch let error as RedisError {
            switch error {
            case .timedOut: record(name, outcome: "timeout", since: start)
            case .unavailable: record(name, outcome: "unavailable", since: start)
            default: record(name, outcome: "error", since: start)
            }
            throw error
        }
    }

    /// Runs a script by its SHA (`EVALSHA`), sending the script itself (`EVAL`) when the server does not have it cached
    /// (after a restart or `SCRIPT FLUSH`); Redis then caches it for the next call.
    public func eval(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = [], timeout: Duration? = nil) async throws
        -> RESPValue
    {
        let tail = [RedisArgument(keys.count)] + keys + arguments
        do {
            return try await send(["EVALSHA", RedisArgument(script.sha1)] + tail, timeout: timeout)
        } catch RedisError.server(.noScript, _) {
            return try await send(["EVAL", RedisArgument(script.source)] + tail, timeout: timeout)
        }
    }

    /// `PUBLISH channel message`; answers how many subscribers received it.
    @discardableResult
    public func publish(_ message: RedisArgument, to channel: String) async throws -> Int {
        try await send(["PUBLISH", RedisArgument(channel), message]).int ?? 0
    }

    /// Closes every connection; later calls fail.
    public func close() async {
        let connections = state.withLockedValue { state -> [RedisConnection] in
            state.closed = true
            defer { state.slots = state.slots.map { _ in .empty } }
            return state.slots.compactMap { if case .connected(let connection) = $0 { connection } else { nil } }
        }
        for connection in connections { await connection.close() }
    }

    // MARK: The pool

    private func connection() async throws -> RedisConnection {
        // A slot in backoff passes the call on: one broken connection must not refuse calls another slot can serve.
        var tries = state.withLockedValue { $0.slots.count }
        while true {
            tries -= 1
            do {
                return try await slotConnection()
            } catch RedisError.unavailable(let reason) where tries > 0 && reason != Self.closedReason {
                continue
            }
        }
    }

    static let closedReason = "the client is closed"

    private func slotConnection() async throws -> RedisConnection {
        enum Next {
            case use(RedisConnection)
            case wait(EventLoopFuture<RedisConnection>)
            case connect(Int, EventLoopPromise<RedisConnection>)
            case refuse(String)
        }
        let eventLoop = eventLoopGroup.any()
        let next = state.withLockedValue { state -> Next in
            guard !state.closed else { return .refuse(Self.closedReason) }
            let index = state.next % state.slots.count
            state.next &+= 1
            switch state.slots[index] {
            case .connected(let connection) where connection.isActive:
                return .use(connection)
            case .connecting(let future):
                return .wait(future)
            case .backoff(let until, let reason) where NIODeadline.now() < until:
                return .refuse(reason)
            default:
                let promise = eventLoop.makePromise(of: RedisConnection.self)
                state.slots[index] = .connecting(promise.futureResult)
                return .connect(index, promise)
            }
        }
        switch next {
        case .use(let connection): return connection
        case .wait(let future): return try await future.get()
        case .refuse(let reason): throw RedisError.unavailable(reason)
        case .connect(let index, let promise):
            do {
                let connection = try await RedisConnection.connect(configuration, eventLoop: eventLoop)
                let closed = state.withLockedValue { state in
                    state.failures[index] = 0
                    state.slots[index] = state.closed ? .empty : .connected(connection)
                    return state.closed
                }
                if closed {
                    // Closed while this connection was being made: nobody will close it later.
                    await connection.close()
                    promise.fail(RedisError.unavailable(Self.closedReason))
                    throw RedisError.unavailable(Self.closedReason)
                }
                // A connection that breaks is replaced on the next call through its slot.
                connection.closeFuture.whenComplete { [state] _ in
                    state.withLockedValue { state in
                        if case .connected(let current) = state.slots[index], current === connection { state.slots[index] = .empty }
                    }
                }
                promise.succeed(connection)
                return connection
            } catch {
                let reason = "\(error)"
                let (failures, delay) = state.withLockedValue { state -> (Int, Duration) in
                    state.failures[index] += 1
                    let failures = state.failures[index]
                    let doubled = configuration.minimumBackoff * (1 << min(failures - 1, 16))
                    let delay = min(doubled, configuration.maximumBackoff)
                    state.slots[index] = .backoff(until: .now() + .nanoseconds(delay.wholeNanoseconds), reason: reason)
                    return (failures, delay)
                }
                if failures == 1 {
                    logger.warning("Redis unavailable", metadata: ["redis": "\(configuration.redacted)", "error": "\(reason)"])
                } else {
                    logger.debug(
                        "Redis still unavailable",
                        metadata: ["redis": "\(configuration.redacted)", "failures": "\(failures)", "retryInMs": "\(delay.wholeMilliseconds)"])
                }
                promise.fail(error)
                throw error
            }
        }
    }

    private func record(_ name: String, outcome: String, since start: NIODeadline) {
        Counter(label: "redis_commands_total", dimensions: [("command", name), ("outcome", outcome)]).increment()
        Metrics.Timer(label: "redis_command_duration_seconds", dimensions: [("command", name)])
            .recordNanoseconds((NIODeadline.now() - start).nanoseconds)
    }

    /// The command's name for spans and metrics (its first word, upper-cased; never a key or a value).
    static func commandName(_ command: [RedisArgument]) -> String {
        guard let first = command.first else { return "" }
        return String(buffer: first.bytes).uppercased()
    }
}

/// A Lua script, sent by its SHA-1 (``RedisClient/eval(_:keys:arguments:timeout:)``).
public struct RedisScript: Sendable {
    public let source: String
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        let digits = Array("0123456789abcdef".utf8)
        self.sha1 = String(
            decoding: Insecure.SHA1.hash(data: Array(source.utf8)).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
    }
}

/// Closes a client's connections when the service group stops.
public struct RedisClientService: Service {
    public let client: RedisClient

    public init(client: RedisClient) { self.client = client }

    public func run() async throws {
        try? await gracefulShutdown()
        await client.close()
    }
}
