import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import ServiceResilience
import ShopContracts

/// Runs each service of a ``LocalSystem`` as its own OS process (`shop serve NAME`) and restarts one that exits
/// unexpectedly, with exponential backoff, as Kubernetes restarts a pod. On graceful shutdown every process gets
/// SIGTERM, and SIGKILL if it has not exited within the grace period.
public final class Supervisor: Service, Sendable {
    /// One instance of a service.
    public struct Instance: Hashable, Sendable {
        public var service: ServiceName
        /// 0 for the first instance.
        public var replica: Int

        public init(_ service: ServiceName, replica: Int = 0) {
            self.service = service
            self.replica = replica
        }

        /// `order`, then `order-2`, `order-3`…
        public var label: String { replica == 0 ? service.rawValue : "\(service.rawValue)-\(replica + 1)" }
    }

    struct State {
        var processes: [Instance: Process] = [:]
        var restarts: [ServiceName: Int] = [:]
        /// Services stopped on purpose (``stop(_:)``), not restarted until ``start(_:)``.
        var stopped: Set<ServiceName> = []
        /// Processes that had to be killed because they did not stop within the grace period.
        var forcedKills = 0
    }

    let system: LocalSystem
    let executable: URL
    let logger: Logger
    let gracePeriod: Duration
    /// When set, each service's output goes to `<logDirectory>/<service>.log` instead of this process's output.
    let logDirectory: String?
    private let state = NIOLockedValueBox(State())

    /// - Parameter executable: the `shop` binary (by default this process's own executable).
    public init(
        system: LocalSystem,
        executable: URL = Supervisor.currentExecutable,
        logger: Logger,
        gracePeriod: Duration = .seconds(10),
        logDirectory: String? = nil
    ) {
        self.system = system
        self.logDirectory = logDirectory
        self.executable = executable
        self.logger = logger
        self.gracePeriod = gracePeriod
    }

    /// This process's executable.
    public static var currentExecutable: URL {
        URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
    }

    /// The process id of `service`'s current process (instance `replica`).
    public func processIdentifier(of service: ServiceName, replica: Int = 0) -> Int32? {
        state.withLockedValue { $0.processes[Instance(service, replica: replica)]?.processIdentifier }
    }

    /// How many processes had to be killed at shutdown because they did not stop in time on SIGTERM.
    public var forcedKills: Int { state.withLockedValue { $0.forcedKills } }

    /// Stops every instance of `service` (SIGTERM) and keeps it stopped until ``start(_:)``, as an operator scaling it
    /// to zero would.
    public func stop(_ service: ServiceName) {
        let running = state.withLockedValue { state in
            state.stopped.insert(service)
            return state.processes.filter { $0.key.service == service }.map(\.value)
        }
        for process in running where process.isRunning {
            let pid = process.processIdentifier
            kill(pid, SIGTERM)
            // As at shutdown: killed if it has not stopped within the grace period.
            Task { [gracePeriod, state, logger] in
                try? await Task.sleep(for: gracePeriod)
                guard process.isRunning, process.processIdentifier == pid else { return }
                kill(pid, SIGKILL)
                state.withLockedValue { $0.forcedKills += 1 }
                logger.warning("Service did not stop within the grace period; killed", metadata: ["service": "\(service.rawValue)"])
            }
        }
        logger.notice(
            "Stopping service on request", metadata: ["service": "\(service.rawValue)", "processes": "\(running.map(\.processIdentifier))"])
    }

    /// Starts `service` again after ``stop(_:)``.
    public func start(_ service: ServiceName) {
        _ = state.withLockedValue { $0.stopped.remove(service) }
    }

    func isStopped(_ service: ServiceName) -> Bool { state.withLockedValue { $0.stopped.contains(service) } }

    /// How many times `service` has been restarted.
    public func restartCount(of service: ServiceName) -> Int {
        state.withLockedValue { $0.restarts[service] ?? 0 }
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for service in system.services {
                for replica in 0..<system.instances(of: service) {
                    group.addTask { await self.supervise(Instance(service, replica: replica)) }
                }
            }
        }
    }

    private func supervise(_ instance: Instance) async {
        let service = instance.service
        var failures = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            // Stopped on purpose: wait (checking every 50 ms) until started again or shut down.
            while isStopped(service), !Task.isShuttingDownGracefully, !Task.isCancelled {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(50)) }
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let started = ContinuousClock.now
            let status: Int32
            do {
                status = try await runOnce(instance)
            } catch {
                logger.error("Could not start service", metadata: ["service": "\(service.rawValue)", "error": "\(error)"])
                status = -1
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            if isStopped(service) {
                logger.notice("Service stopped on request", metadata: ["service": "\(instance.label)"])
                continue
            }
            // A process that ran for a while before failing starts its backoff afresh.
            failures = ContinuousClock.now - started > .seconds(30) ? 1 : failures + 1
            let delay = Duration.milliseconds(min(30_000, 250 * (1 << min(failures, 7))))
            let count = state.withLockedValue { state in
                state.restarts[service, default: 0] += 1
                return state.restarts[service]!
            }
            logger.warning(
                "Service exited unexpectedly; restarting",
                metadata: ["service": "\(instance.label)", "status": "\(status)", "restarts": "\(count)", "delayMs": "\(delay.wholeMilliseconds)"]
            )
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        }
    }

    /// Starts `service` and waits for it to exit; on shutdown it is asked to stop, then killed after the grace period.
    private func runOnce(_ instance: Instance) async throws -> Int32 {
        let service = instance.service
        let process = Process()
        process.executableURL = executable
        process.arguments = ["serve", service.rawValue]
        var environment = system.environment(for: service, replica: instance.replica)
        environment["SHOP_SUPERVISOR_PID"] = String(ProcessInfo.processInfo.processIdentifier)
        process.environment = environment
        if let logDirectory {
            try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
            let path = (logDirectory as NSString).appendingPathComponent("\(instance.label).log")
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try log.seekToEnd()
            process.standardOutput = log
            process.standardError = log
        }
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { process in
            exited.continuation.yield(process.terminationStatus)
            exited.continuation.finish()
        }
        try process.run()
        state.withLockedValue { $0.processes[instance] = process }
        logger.debug("Started service", metadata: ["service": "\(instance.label)", "pid": "\(process.processIdentifier)"])

        let gracePeriod = self.gracePeriod
        return await withTaskCancellationOrGracefulShutdownHandler {
            var iterator = exited.stream.makeAsyncIterator()
            return await iterator.next() ?? -1
        } onCancelOrGracefulShutdown: {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: gracePeriod)
                if process.isRunning {
                    kill(pid, SIGKILL)
                    self.state.withLockedValue { $0.forcedKills += 1 }
                    self.logger.warning("Service did not stop within the grace period; killed", metadata: ["service": "\(instance.label)"])
                }
            }
        }
    }
}
