import Foundation
import NIOConcurrencyHelpers

/// A helper program a test runs (a fixture server, a command-line tool), awaited without blocking a thread:
/// `Process.waitUntilExit()` spins a run loop that, on Linux, can wait for ever on Swift's concurrency threads.
public final class ChildProcess: Sendable {
    private struct State {
        var status: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []
    }

    /// The program, immutable once started.
    nonisolated(unsafe) private let process: Process
    private let output: Pipe?
    private let state = NIOLockedValueBox(State())

    /// A program that could not be started or did not do what the test needs.
    public struct Failed: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Starts `arguments[0]` (found on the PATH) with the rest as its arguments; with `captureOutput` its standard
    /// output can be read with ``readLine(within:)``, otherwise it is discarded. Standard error is discarded.
    public init(_ arguments: [String], captureOutput: Bool = false) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        output = captureOutput ? Pipe() : nil
        process.standardOutput = output ?? FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.terminationHandler = { [state] process in
            let waiters = state.withLockedValue { state in
                state.status = process.terminationStatus
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: process.terminationStatus) }
        }
        try process.run()
    }

    /// Runs a command to its end and answers its exit status.
    @discardableResult
    public static func run(_ arguments: [String]) async throws -> Int32 {
        try await ChildProcess(arguments).wait()
    }

    public var processIdentifier: Int32 { process.processIdentifier }

    /// Waits for the program to end; answers its exit status.
    public func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status = state.withLockedValue { state -> Int32? in
                if state.status == nil { state.waiters.append(continuation) }
                return state.status
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// One line of the program's standard output (without its newline); past `within`, the program is killed and the
    /// line read so far (maybe empty) is answered.
    public func readLine(within deadline: Duration) async -> String {
        guard let descriptor = output?.fileHandleForReading.fileDescriptor else { return "" }
        let pid = process.processIdentifier
        let watchdog = Task {
            try await Task.sleep(for: deadline)
            kill(pid, SIGKILL)
        }
        defer { watchdog.cancel() }
        return await withCheckedContinuation { continuation in
            // A blocking read on a thread of its own: it ends with a newline, or when the program's output closes.
            Thread.detachNewThread {
                var bytes: [UInt8] = []
                var byte: UInt8 = 0
                while bytes.count < 4096, read(descriptor, &byte, 1) == 1, byte != UInt8(ascii: "\n") { bytes.append(byte) }
                continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
            }
        }
    }

    /// Stops the program: SIGTERM, then SIGKILL if it has not ended within `grace`; returns once it has ended.
    public func stop(grace: Duration = .seconds(5)) async {
        guard state.withLockedValue({ $0.status == nil }) else { return }
        kill(process.processIdentifier, SIGTERM)
        let pid = process.processIdentifier
        let killer = Task {
            try await Task.sleep(for: grace)
            kill(pid, SIGKILL)
        }
        _ = await wait()
        killer.cancel()
    }
}
