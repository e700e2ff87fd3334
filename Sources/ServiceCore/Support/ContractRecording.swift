import Foundation
import NIOConcurrencyHelpers

/// Appends JSON lines to a file named by an environment variable: what the services answered (`SHOP_RECORD_RESPONSES`)
/// and the events they emitted (`SHOP_RECORD_EVENTS`) during a test run, which `scripts/contracts.py` then checks
/// against the OpenAPI and AsyncAPI documents. Without the variable there is no recorder and nothing is done.
public final class ContractRecording: Sendable {
    /// The recorder of HTTP responses (`SHOP_RECORD_RESPONSES`), opened once per process.
    public static let responses = ContractRecording(variable: "SHOP_RECORD_RESPONSES")
    /// The recorder of emitted events (`SHOP_RECORD_EVENTS`), opened once per process.
    public static let events = ContractRecording(variable: "SHOP_RECORD_EVENTS")

    private let descriptor: Int32
    private let lock = NIOLock()

    init?(variable: String) {
        guard let path = ProcessInfo.processInfo.environment[variable], !path.isEmpty else { return nil }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
    }

    /// Appends `line` and a newline, in one write: lines from concurrent callers never interleave.
    public func append(_ line: Data) {
        var line = line
        line.append(0x0A)
        lock.withLock {
            _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        }
    }
}
