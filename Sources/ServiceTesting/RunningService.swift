import Foundation
import Logging
import ServiceCore
import ServiceHTTP
import ServiceLifecycle

/// Runs services on real sockets for the length of a test body, then shuts them down gracefully.
public enum RunningService {
    /// A service that did not report its port in time.
    public struct DidNotStart: Error {}

    /// Builds each service with a callback that hears its bound port, runs them all, calls `body` with the ports in
    /// order, and stops them when `body` returns or throws.
    public static func with<T: Sendable>(
        _ builders: [@Sendable (_ onServerRunning: @escaping @Sendable (Int) async -> Void) async throws -> any Service],
        _ body: @Sendable ([Int]) async throws -> T
    ) async throws -> T {
        // Tests stand in for a process's entry point: the metrics backend goes in before services record anything.
        ServiceMetrics.bootstrap()
        var services: [any Service] = []
        var streams: [AsyncStream<Int>] = []
        var continuations: [AsyncStream<Int>.Continuation] = []
        for build in builders {
            let (stream, continuation) = AsyncStream<Int>.makeStream()
            continuations.append(continuation)
            services.append(
                try await build { port in
                    continuation.yield(port)
                    continuation.finish()
                }
            )
            streams.append(stream)
        }
        let group = ServiceGroup(services: services, logger: Logger(label: "test"))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            let started = continuations
            tasks.addTask {
                // A service that fails before it listens ends the group: end the port streams too, so the test fails
                // with the error instead of waiting for a port forever.
                defer { for continuation in started { continuation.finish() } }
                try await group.run()
            }
            do {
                var ports: [Int] = []
                for stream in streams {
                    var iterator = stream.makeAsyncIterator()
                    guard let port = await iterator.next() else {
                        // Surface the service's own error when there is one.
                        try await tasks.next()
                        throw DidNotStart()
                    }
                    ports.append(port)
                }
                let result = try await body(ports)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}
