import Foundation
import NIOConcurrencyHelpers
import ServiceCore
import Subprocess
import SystemPackage

/// A helper program a test runs (a fixture server, a command-line tool, the `shop` binary), awaited without blocking a
/// thread.
///
/// Run with swift-subprocess rather than Foundation's `Process`: on Linux `Process` learns of a child's exit through a
/// socket created without close-on-exec, so a child spawned at the same moment by another test can inherit it and hide
/// this one's exit until that other child ends; its `waitUntilExit()` also spins a run loop on a concurrency thread.
public final class ChildProcess: Sendable {
    private struct State {
        var status: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []
        /// Standard output so far (with `captureOutput`), and how much of it ``readLine(within:)`` has handed out.
        var output: [UInt8] = []
        var consumed = 0
        var outputEnded = false
    }

    private let state = NIOLockedValueBox(State())
    private let outputChanged = Wakeup()
    /// The process id, fixed once started.
    public let processIdentifier: pid_t

    /// A program that could not be started or did not do what the test needs.
    public struct Failed: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Starts `arguments[0]` (a path, or a name found on the PATH) with the rest as its arguments, in this process's
    /// environment with `environment` applied (a nil value removes a variable). With `captureOutput` its standard output
    /// is collected (``output``, ``readLine(within:)``), otherwise discarded. Standard error is discarded.
    public init(_ arguments: [String], environment: [String: String?] = [:], captureOutput: Bool = false) async throws {
        guard let program = arguments.first else { throw Failed("no program to run") }
        var variables = ProcessInfo.processInfo.environment
        for (key, value) in environment { variables[key] = value }
        let configuration = Configuration(
            executable: program.contains("/") ? .path(FilePath(program)) : .name(program),
            arguments: Arguments(Array(arguments.dropFirst())),
            environment: .custom(
                Dictionary(uniqueKeysWithValues: variables.compactMap { key, value in Subprocess.Environment.Key(rawValue: key).map { ($0, value) } })
            )
        )
        let started = AsyncThrowingStream<pid_t, any Error>.makeStream()
        Task { [state, outputChanged] in
            let status: TerminationStatus
            do {
                if captureOutput {
                    status = try await Subprocess.run(configuration, input: .none, output: .sequence, error: .discarded) { execution in
                        started.continuation.yield(execution.processIdentifier.value)
                        do {
                            for try await chunk in execution.standardOutput {
                                let bytes = chunk.withUnsafeBytes { Array($0) }
                                state.withLockedValue { $0.output += bytes }
                                outputChanged.signal()
                            }
                        } catch {}
                    }.terminationStatus
                } else {
                    status = try await Subprocess.run(configuration, input: .none, output: .discarded, error: .discarded) { execution in
                        started.continuation.yield(execution.processIdentifier.value)
                    }.terminationStatus
                }
            } catch {
                started.continuation.finish(throwing: error)
                return
            }
            // As a shell reports it: the exit code, or 128 + the signal that ended it.
            let code: Int32
            switch status {
            case .exited(let exit): code = exit
            case .signaled(let signal): code = 128 + signal
            }
            let waiters = state.withLockedValue { state in
                state.status = code
                state.outputEnded = true
                defer { state.waiters = [] }
                return state.waiters
            }
            outputChanged.signal()
            for waiter in waiters { waiter.resume(returning: code) }
        }
        var iterator = started.stream.makeAsyncIterator()
        guard let pid = try await iterator.next() else { throw Failed("\(program) did not start") }
        processIdentifier = pid
    }

    /// Runs a command to its end and answers its exit status.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String?] = [:]) async throws -> Int32 {
        try await ChildProcess(arguments, environment: environment).wait()
    }

    /// Runs a command to its end and answers its exit status and standard output.
    public static func output(of arguments: [String], environment: [String: String?] = [:]) async throws -> (status: Int32, output: String) {
        let process = try await ChildProcess(arguments, environment: environment, captureOutput: true)
        let status = await process.wait()
        return (status, process.output)
    }

    /// Whether the program is still running.
    public var isRunning: Bool { state.withLockedValue { $0.status == nil } }

    /// Everything the program has written to its standard output so far (with `captureOutput`).
    public var output: String { String(decoding: state.withLockedValue { $0.output }, as: UTF8.self) }

    /// Waits for the program to end; answers its exit status (128 + the signal for a program a signal ended).
    public func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status = state.withLockedValue { state -> Int32? in
                if state.status == nil { state.waiters.append(continuation) }
                return state.status
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// The next line of the program's standard output (without its newline); past `within`, the program is killed and
    /// the part of a line read so far (maybe empty) is answered.
    public func readLine(within timeout: Duration) async -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let line = state.withLockedValue { state -> [UInt8]? in
                let rest = state.output[state.consumed...]
                if let newline = rest.firstIndex(of: UInt8(ascii: "\n")) {
                    defer { state.consumed = newline + 1 }
                    return Array(state.output[state.consumed..<newline])
                }
                if state.outputEnded {
                    defer { state.consumed = state.output.count }
                    return Array(rest)
                }
                return nil
            }
            if let line { return String(decoding: line, as: UTF8.self) }
            let now = ContinuousClock.now
            if now >= deadline {
                if isRunning { kill(processIdentifier, SIGKILL) }
                return state.withLockedValue { state in
                    defer { state.consumed = state.output.count }
                    return String(decoding: state.output[state.consumed...], as: UTF8.self)
                }
            }
            await outputChanged.wait(timeout: deadline - now)
        }
    }

    /// Sends `signal` to the program if it is still running.
    public func send(_ signal: Int32) {
        if isRunning { kill(processIdentifier, signal) }
    }

    /// Stops the program: SIGTERM, then SIGKILL if it has not ended within `grace`; returns once it has ended.
    @discardableResult
    public func stop(grace: Duration = .seconds(5)) async -> Int32 {
        send(SIGTERM)
        let killer = Task { [self] in
            try await Task.sleep(for: grace)
            send(SIGKILL)
        }
        defer { killer.cancel() }
        return await wait()
    }
}
