import Foundation
import ServiceLifecycle

/// Ends a supervised service process when its supervisor is gone (a killed `shop up` must not leave orphans behind).
/// Returning from `run()` makes the service group shut down gracefully.
public struct ParentWatchdog: Service {
    let parent: Int32

    /// Watches `SHOP_SUPERVISOR_PID`; nil when the process is not supervised.
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let value = environment["SHOP_SUPERVISOR_PID"], let pid = Int32(value) else { return nil }
        self.parent = pid
    }

    public func run() async throws {
        // getppid() becomes another process (init or a subreaper) once the supervisor has died.
        // It also ends on graceful shutdown: the group shuts its services down one by one, last first, and waits for
        // each, so a watchdog that kept looping would hold the whole process up until it was killed.
        while getppid() == parent, !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(500)) }
        }
    }
}
