import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import ServiceResilience
import ShopContracts
import Subprocess
import SystemPackage

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
        /// The process id of each running instance.
        var processes: [Instance: pid_t] = [:]
        /// Ends an instance's current run (SIGTERM, then SIGKILL after the grace period).
        var stops: [Instance: @Sendable () -> Void] = [:]
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
        state.withLockedValue { $0.processes[Instance(service, replica: replica)] }
    }

    /// How many processes had to be killed at shutdown because they did not stop in time on SIGTERM.
    public var forcedKills: Int { state.withLockedValue { $0.forcedKills } }

    /// Stops every instance of `service` (SIGTERM) and keeps it stopped until ``start(_:)``, as an operator scaling it
    /// to zero would.
    public func stop(_ service: ServiceName) {
        let (stops, pids) = state.withLockedValue { state in
            state.stopped.insert(service)
            return (
                state.stops.filter { $0.key.service == service }.map(\.value),
                state.processes.filter { $0.key.service == service }.map(\.value)
            )
        }
        // Each run ends as at shutdown: SIGTERM, and SIGKILL after the grace period.
        for stop in stops { stop() }
        logger.notice("Stopping service on request", metadata: ["service": "\(service.rawValue)", "processes": "\(pids)"])
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
            let status: String
            do {
                status = "\(try await runOnce(instance))"
            } catch {
                logger.error("Could not start service", metadata: ["service": "\(service.rawValue)", "error": "\(error)"])
                status = "not started"
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

    /// Starts the instance and waits for it to end. On a graceful shutdown, or ``stop(_:)``, it gets SIGTERM, and
    /// SIGKILL if it has not ended within the grace period.
    ///
    /// Processes are run with swift-subprocess, not Foundation's `Process`: on Linux, `Process` learns of a child's exit
    /// through a socket the child holds, created without close-on-exec, so a second child spawned at the same moment
    /// (another service starting) can inherit it and hide the first one's death until the second also ends — a killed
    /// service was then never restarted. Subprocess waits on a pidfd and closes every other descriptor in the child.
    private func runOnce(_ instance: Instance) async throws -> TerminationStatus {
        let service = instance.service
        var environment = system.environment(for: service, replica: instance.replica)
        environment["SHOP_SUPERVISOR_PID"] = String(getpid())
        let variables = Dictionary(
            environment.compactMap { key, value in Subprocess.Environment.Key(rawValue: key).map { ($0, value) } },
            uniquingKeysWith: { first, _ in first }
        )
        let log = try logDirectory.map { directory in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = (directory as NSString).appendingPathComponent("\(instance.label).log")
            return try FileDescriptor.open(
                FilePath(path), .writeOnly, options: [.append, .create], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        }
        defer { try? log?.close() }
        let output = log.map { FileDescriptorOutput.fileDescriptor($0, closeAfterSpawningProcess: false) }
        var options = PlatformOptions()
        // A group of its own (as a terminal's Ctrl-C reaches only the supervisor, which stops the services in order).
        options.processGroupID = 0
        // What cancelling the run does: SIGTERM, then SIGKILL after the grace period.
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: gracePeriod)]

        let run = Task { [executable, state, logger] in
            try await Subprocess.run(
                .path(FilePath(executable.path)), arguments: ["serve", service.rawValue], environment: .custom(variables),
                platformOptions: options, input: .none, output: output ?? .currentStandardOutput, error: output ?? .currentStandardError
            ) { execution in
                let pid = execution.processIdentifier.value
                state.withLockedValue { $0.processes[instance] = pid }
                logger.debug("Started service", metadata: ["service": "\(instance.label)", "pid": "\(pid)"])
            }.terminationStatus
        }
        // Stopped on request from now on; already stopped (between the supervisor's check and here): at once.
        let stopNow = state.withLockedValue { state in
            state.stops[instance] = { run.cancel() }
            return state.stopped.contains(service)
        }
        if stopNow { run.cancel() }
        defer {
            state.withLockedValue { state in
                state.processes[instance] = nil
                state.stops[instance] = nil
            }
        }
        let status = try await withTaskCancellationOrGracefulShutdownHandler {
            try await run.value
        } onCancelOrGracefulShutdown: {
            run.cancel()
        }
        if run.isCancelled, status == .signaled(SIGKILL) {
            state.withLockedValue { $0.forcedKills += 1 }
            logger.warning("Service did not stop within the grace period; killed", metadata: ["service": "\(instance.label)"])
        }
        return status
    }
}
