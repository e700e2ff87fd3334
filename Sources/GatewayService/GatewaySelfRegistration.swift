import Foundation
import Logging
import ServiceDiscovery
import ServiceLifecycle

/// The gateway's own entry in the registry it hosts (service `gateway`), so `GET /services` — and `shop status` —
/// lists every gateway sharing the registry with its URL. Registered once the proxy listens (its port may be chosen by
/// the system), renewed every heartbeat interval like any instance, removed on shutdown.
struct GatewaySelfRegistration: Service {
    let registry: ServiceRegistry
    let mirror: RegistryMirror?
    let host: String
    /// Yields the proxy's bound port once it listens.
    let boundPort: AsyncStream<Int>
    let logger: Logger
    let id = "gateway-" + UUID().uuidString.prefix(8).lowercased()

    func run() async throws {
        let ports = boundPort
        guard let port = try? await cancelWhenGracefulShutdown({ await ports.first { _ in true } }) ?? nil else { return }
        // A wildcard address is no URL another process can call: the machine's name stands in for it.
        let reachable = ["0.0.0.0", "::", ""].contains(host) ? ProcessInfo.processInfo.hostName : host
        let base = "http://\(reachable.contains(":") ? "[\(reachable)]" : reachable):\(port)"
        let registration = ServiceRegistration(name: "gateway", url: base, healthCheck: base + "/health/live", instanceId: id)
        do {
            let instance = try registry.register(try registration.validated())
            await mirror?.put(instance)
        } catch {
            logger.warning("The gateway could not register itself", metadata: ["url": "\(base)", "error": "\(error)"])
            return
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: registry.heartbeatInterval) }
            guard !Task.isShuttingDownGracefully, !Task.isCancelled else { break }
            // Forgotten (e.g. evicted while this process was paused): register again.
            let instance = registry.heartbeat(id) ?? (try? registry.register(registration.validated()))
            if let instance { await mirror?.put(instance) }
        }
        // Removed from the shared registry here, not only by the removal handler's task, which shutdown may outrun.
        if let gone = registry.deregister(id) { await mirror?.remove([gone]) }
    }
}
