import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import ServiceResilience
import Synchronization

/// A message received on a subscribed channel.
public struct RedisMessage: Sendable {
    public var channel: String
    public var payload: ByteBuffer
}

/// Pub/sub on a connection of its own (a subscribed connection can run no other command): subscribes to `channels`,
/// hands each message to `onMessage`, and after the connection breaks connects again (with backoff) and subscribes
/// again. Messages published while it was disconnected are lost, as pub/sub promises no more; users of it (cache
/// invalidation) treat a reconnect as "anything may have changed" through `onReconnect`.
public final class RedisSubscriber: Service, Sendable {
    let configuration: RedisConfiguration
    let channels: [String]
    let logger: Logger
    let onMessage: @Sendable (RedisMessage) -> Void
    let onReconnect: @Sendable () -> Void
    private let confirmed = NIOLockedValueBox<Set<String>>([])
    private let connections = NIOLockedValueBox(0)
    private let listening = Atomic<Bool>(false)

    public init(
        configuration: RedisConfiguration, channels: [String], logger: Logger, onReconnect: @escaping @Sendable () -> Void = {},
        onMessage: @escaping @Sendable (RedisMessage) -> Void
    ) {
        self.configuration = configuration
        self.channels = channels
        self.logger = logger
        self.onMessage = onMessage
        self.onReconnect = onReconnect
    }

    /// Whether every channel's subscription is confirmed on the current connection.
    public var isSubscribed: Bool { confirmed.withLockedValue { Set(channels).isSubset(of: $0) } }

    /// Whether every channel is subscribed on a live connection (a lock-free read, for hot paths: a cache trusts what
    /// it holds only while it hears invalidations).
    public var isListening: Bool { listening.load(ordering: .acquiring) }

    /// How many connections it has tried to make (the first, then one per reconnect attempt).
    public var connectionCount: Int { connections.withLockedValue { $0 } }

    public func run() async throws {
        var failures = 0
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                let count = connections.withLockedValue { count in
                    count += 1
                    return count
                }
                // After a reconnect, "anything may have changed" is said once the subscription is back, so a change
                // published in between is not lost between that and the subscription.
                let channels = Set(self.channels)
                let onReconnect = self.onReconnect
                let reconnected: @Sendable () -> Void = { if count > 1 { onReconnect() } }
                let connection = try await RedisConnection.connect(
                    configuration,
                    onPush: { [confirmed, onMessage, self] parts in
                        if Self.handle(parts, confirmed: confirmed, onMessage: onMessage), confirmed.withLockedValue({ $0 == channels }) {
                            // Caches empty themselves (reconnected) before they trust what they hold again.
                            reconnected()
                            listening.store(true, ordering: .releasing)
                        }
                    },
                    onUnexpectedError: { [logger] message in logger.error("Redis refused the subscription", metadata: ["error": "\(message)"]) }
                )
                failures = 0
                connection.write(["SUBSCRIBE"] + channels.map { RedisArgument($0) })
                // Until the connection breaks, or the service stops.
                try? await withTaskCancellationOrGracefulShutdownHandler {
                    try await connection.closeFuture.get()
                } onCancelOrGracefulShutdown: {
                    connection.channel.close(promise: nil)
                }
                listening.store(false, ordering: .releasing)
                confirmed.withLockedValue { $0.removeAll() }
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                logger.warning("Redis subscription lost; reconnecting", metadata: ["redis": "\(configuration.redacted)"])
            } catch {
                failures += 1
                if failures == 1 {
                    logger.warning("Redis subscription failed", metadata: ["redis": "\(configuration.redacted)", "error": "\(error)"])
                }
            }
            let delay = min(configuration.minimumBackoff * (1 << min(max(failures - 1, 0), 16)), configuration.maximumBackoff)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        }
    }

    /// Handles one push; true when it confirmed a channel's subscription.
    private static func handle(_ parts: [RESPValue], confirmed: NIOLockedValueBox<Set<String>>, onMessage: @Sendable (RedisMessage) -> Void) -> Bool {
        guard let kind = parts.first?.string else { return false }
        switch kind {
        case "subscribe":
            guard parts.count >= 2, let channel = parts[1].string else { return false }
            _ = confirmed.withLockedValue { $0.insert(channel) }
            return true
        case "message":
            guard parts.count >= 3, let channel = parts[1].string, case .bulkString(let payload) = parts[2] else { return false }
            onMessage(RedisMessage(channel: channel, payload: payload))
            return false
        default:
            return false
        }
    }
}
