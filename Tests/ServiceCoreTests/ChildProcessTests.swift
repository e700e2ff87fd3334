import Foundation
import ServiceTesting
import Testing

/// The process runner that the supervisor's and the tests' children share the approach of (swift-subprocess).
@Suite struct ChildProcessTests {
    /// Foundation's `Process` missed about one exit in fifty in this very setup (many descriptors open, children
    /// started from several threads at once, long-lived ones among them): the short child's exit socket leaked into a
    /// long-lived sibling. A supervisor built on it never restarted a service killed at such a moment.
    @Test func everyExitIsSeenWhileSiblingsStartedAtTheSameMomentKeepRunning() async throws {
        // Many open descriptors, as in a service or a test run, widen the window in which a sibling can inherit one.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < 4096, limit.rlim_max >= 4096 {
            limit.rlim_cur = 4096
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let held = (0..<1500).map { _ in open("/dev/null", O_RDONLY) }
        defer { for descriptor in held where descriptor >= 0 { close(descriptor) } }
        try #require(held.filter { $0 >= 0 }.count >= 1000, "could not hold the descriptors the setup needs")

        let children = try await withThrowingTaskGroup(of: (long: Bool, process: ChildProcess).self) { group in
            for index in 0..<200 {
                group.addTask {
                    let long = index % 2 == 0
                    return (long, try await ChildProcess(long ? ["sleep", "60"] : ["true"]))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let short = children.filter { !$0.long }.map(\.process)
        let long = children.filter(\.long).map(\.process)
        #expect(short.count == 100 && long.count == 100)

        try await eventually("every short child's exit to be seen", timeout: .seconds(10)) {
            short.allSatisfy { !$0.isRunning }
        }
        for process in short { #expect(await process.wait() == 0) }
        #expect(long.allSatisfy { $0.isRunning })
        for process in long { #expect(await process.stop(grace: .seconds(2)) == 128 + SIGTERM) }
    }

    @Test func outputLinesEnvironmentAndStatus() async throws {
        let result = try await ChildProcess.output(
            of: ["sh", "-c", #"printf 'one\ntwo %s\n' "$CHILD_TEST"; exit 3"#], environment: ["CHILD_TEST": "here"])
        #expect(result.status == 3)
        #expect(result.output == "one\ntwo here\n")

        let process = try await ChildProcess(["sh", "-c", "echo first; exec sleep 60"], captureOutput: true)
        #expect(await process.readLine(within: .seconds(10)) == "first")
        // No second line comes: past the deadline the program is killed and what there is (nothing) is answered.
        #expect(await process.readLine(within: .milliseconds(300)) == "")
        #expect(await process.wait() == 128 + SIGKILL)

        await #expect(throws: (any Error).self) { try await ChildProcess(["/nonexistent/program"]) }
    }
}
