import Foundation
import Hummingbird
import Logging
import NIOCore

/// Consumer-driven contracts with Pact (pact-python 4.x from PyPI, i.e. the Rust Pact core): a consumer's test runs its
/// real client code against ``PactMockProvider`` (`Tests/Fixtures/pact_mock.py`), which answers from the consumer's
/// expectations and writes them as a Pact specification v4 file; a provider's test replays every pact written for it
/// against the running provider with ``PactVerifier`` (`Tests/Fixtures/pact_verify.py`, pact-python's verifier).
///
/// The pacts are kept in `contracts/pacts/`. A consumer test compares the pact it produced with the kept one and fails
/// when they differ (`SHOP_UPDATE_PACTS=1` writes it instead), so the kept pacts are always what the consumers' code
/// does, and the providers verify exactly those.
public enum Pact {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// `contracts/pacts/` of this repository.
    public static let directory = root.appendingPathComponent("contracts/pacts")
    static let mockScript = root.appendingPathComponent("Tests/Fixtures/pact_mock.py")
    static let verifyScript = root.appendingPathComponent("Tests/Fixtures/pact_verify.py")
    /// The Rust core otherwise sends anonymous usage metrics.
    static let environment: [String: String?] = ["PACT_DO_NOT_TRACK": "true"]

    /// The kept pact of `consumer` with `provider`.
    public static func file(consumer: String, provider: String) -> URL {
        directory.appendingPathComponent("\(consumer)-\(provider).json")
    }

}

/// Pact matchers in the core's integration JSON, as fragments to write into an interaction's JSON. Each carries an
/// example: the value the mock answers and the pact records. Written here because no Swift Pact library is available
/// (pact-python has these as Python functions; the JSON they produce is the core's documented integration format).
public enum PactMatch {
    /// `value` as a JSON literal.
    public static func literal(_ value: String) -> String {
        String(decoding: (try? JSONEncoder().encode(value)) ?? Data("\"\"".utf8), as: UTF8.self)
    }

    /// Any value of the example's type.
    public static func like(_ example: String) -> String { #"{"pact:matcher:type":"type","value":\#(literal(example))}"# }
    public static func like(_ example: Int) -> String { #"{"pact:matcher:type":"integer","value":\#(example)}"# }
    public static func like(_ example: Double) -> String { #"{"pact:matcher:type":"number","value":\#(example)}"# }
    public static func like(_ example: Bool) -> String { #"{"pact:matcher:type":"boolean","value":\#(example)}"# }
    /// A string matching `pattern`.
    public static func regex(_ pattern: String, _ example: String) -> String {
        #"{"pact:matcher:type":"regex","regex":\#(literal(pattern)),"value":\#(literal(example))}"#
    }
    /// An array of at least `min` elements, each like `element` (a JSON fragment).
    public static func eachLike(_ element: String, min: Int = 1) -> String {
        #"{"pact:matcher:type":"type","min":\#(min),"value":[\#(element)]}"#
    }
    /// A string the provider's state setup supplies (`expression` names its values, `${orderId}`); the example is what
    /// the consumer's test used.
    public static func fromState(_ expression: String, regex pattern: String, example: String) -> String {
        #"{"pact:matcher:type":"regex","regex":\#(literal(pattern)),"value":\#(literal(example)),"pact:generator:type":"ProviderState","expression":\#(literal(expression))}"#
    }

    /// A bearer token (the provider's verification sends a real one in its place).
    public static let bearer = regex("^Bearer [A-Za-z0-9._~+/=-]+$", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl")
    /// A JSON content type, with or without parameters.
    public static let json = regex("^application/json(;.*)?$", "application/json; charset=utf-8")
    /// An ISO 8601 timestamp as the services write them.
    public static let timestamp = regex(#"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"#, "2026-12-01T10:00:00.000Z")
}

/// `Tests/Fixtures/pact_mock.py` serving one consumer's expectations of one provider, for one test.
public enum PactMockProvider {
    /// What the mock reported when the consumer's requests did not match its expectations.
    public struct Broken: Error, CustomStringConvertible {
        public var description: String
    }

    /// Starts a mock provider answering the interactions of `spec` (the fixture's JSON: consumer, provider,
    /// interactions), runs `body` with its base URL, then checks that every interaction was requested as expected and
    /// nothing else was. The pact it writes is compared with the kept one (see ``Pact``).
    public static func with<T>(_ spec: String, _ body: (String) async throws -> T) async throws -> T {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pact-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let specFile = folder.appendingPathComponent("spec.json")
        try Data(spec.utf8).write(to: specFile)
        let process = try await ChildProcess(
            ["python3", Pact.mockScript.path, "--spec", specFile.path, "--out-dir", folder.path], environment: Pact.environment, captureOutput: true)
        let result: T
        do {
            let line = await process.readLine(within: .seconds(60))
            guard line.hasPrefix("READY "), let port = Int(line.dropFirst(6)) else {
                await process.stop()
                throw ChildProcess.Failed("pact_mock.py did not start (is pact-python installed? pip install pact-python); it printed '\(line)'")
            }
            result = try await body("http://127.0.0.1:\(port)")
        } catch {
            await process.stop()
            throw error
        }
        let status = await process.stop(grace: .seconds(30))
        let report = process.output.split(separator: "\n").filter { !$0.hasPrefix("READY ") }.joined(separator: "\n")
        guard status == 0, let written = report.split(separator: "\n").first(where: { $0.hasPrefix("OK ") }) else {
            throw Broken(description: "the consumer's requests broke its own contract:\n\(report)")
        }
        try keep(URL(fileURLWithPath: String(written.dropFirst(3))))
        return result
    }

    /// Compares a pact just written with the kept one (all but its `metadata`, which names tool versions); with
    /// `SHOP_UPDATE_PACTS=1` (or when there is none yet) keeps the new one instead.
    static func keep(_ written: URL) throws {
        let kept = Pact.directory.appendingPathComponent(written.lastPathComponent)
        let new = try Data(contentsOf: written)
        let update = ProcessInfo.processInfo.environment["SHOP_UPDATE_PACTS"] == "1"
        if !update, let old = try? Data(contentsOf: kept) {
            guard try contents(old) == contents(new) else {
                throw Broken(
                    description: """
                        the pact \(kept.lastPathComponent) differs from what the consumer's test now expects; if the change \
                        is intended, run the test with SHOP_UPDATE_PACTS=1, commit contracts/pacts/ and let the provider verify it
                        """)
            }
            return
        }
        try FileManager.default.createDirectory(at: Pact.directory, withIntermediateDirectories: true)
        try new.write(to: kept)
    }

    static func contents(_ data: Data) throws -> NSDictionary {
        guard var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Broken(description: "a pact that is not an object")
        }
        object["metadata"] = nil
        return object as NSDictionary
    }
}

/// pact-python's verifier (`Tests/Fixtures/pact_verify.py`) replaying the kept pacts of one provider against it.
public enum PactVerifier {
    /// What the verifier said: one `CONTRACT BROKEN: consumer … expects …` line per interaction that failed.
    public struct Result: Sendable {
        public var status: Int32
        public var output: String
        public var passed: Bool { status == 0 }
    }

    /// Verifies `pacts` (their provider must be `provider`) against the provider at `url`, with provider states set up
    /// through `statesURL`; `headers` replace the pacts' values on every request (a real token for the example one).
    public static func verify(provider: String, url: String, statesURL: String, headers: [(String, String)] = [], pacts: [URL]) async throws
        -> Result
    {
        var arguments = ["python3", Pact.verifyScript.path, "--provider", provider, "--url", url, "--states-url", statesURL]
        for (name, value) in headers { arguments += ["--header", "\(name): \(value)"] }
        arguments += pacts.map(\.path)
        let (status, output) = try await ChildProcess.output(of: arguments, environment: Pact.environment)
        return Result(status: status, output: output)
    }
}

/// A test-only HTTP endpoint the Pact verifier calls to set up a provider state before each interaction (`POST
/// /provider-states` with `{"action", "state", "params"}`). It exists only in the provider's verification test: a
/// normal start of a service has no such route. `setUp` gets the state's name and parameters and answers the values
/// the interaction's `fromState` expressions name (`{"orderId": …}`).
public enum ProviderStates {
    public typealias SetUp = @Sendable (_ state: String, _ params: [String: String]) async throws -> [String: String]

    struct Change: Decodable {
        var action: String?
        var state: String?
        var params: [String: String]?
    }

    /// Runs `body` with the URL of a state endpoint that calls `setUp`.
    public static func with<T: Sendable>(_ setUp: @escaping SetUp, _ body: @Sendable @escaping (String) async throws -> T) async throws -> T {
        try await RunningService.with([
            { onServerRunning in
                let router = Router()
                router.post("provider-states") { request, context -> Response in
                    let change = try await request.decode(as: Change.self, context: context)
                    // An interaction without a state is announced with an empty one. The verifier is not asked for
                    // teardowns: each verification runs against a provider of its own.
                    let state = change.state ?? ""
                    let values = change.action == "teardown" || state.isEmpty ? [:] : try await setUp(state, change.params ?? [:])
                    return Response(
                        status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(values))))
                }
                return Application(
                    router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: { await onServerRunning($0.localAddress!.port!) }, logger: Logger(label: "provider-states"))
            }
        ]) { ports in try await body("http://127.0.0.1:\(ports[0])/provider-states") }
    }

    /// A state the provider's test does not know.
    public struct Unknown: Error, CustomStringConvertible {
        public var state: String
        public init(_ state: String) { self.state = state }
        public var description: String { "unknown provider state '\(state)'" }
    }
}
