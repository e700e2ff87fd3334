import Foundation
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler that writes one JSON object per line:
/// `{"timestamp":…,"level":…,"service":…,"message":…,"correlationId":…, …metadata}`.
///
/// Written by hand: swift-log ships no JSON formatter, and the shape (flat keys, one line, service name)
/// is what log shippers such as Loki or Elasticsearch ingest without parsing rules.
public struct JSONLogHandler: LogHandler {
    /// Where lines go; defaults to standard error so standard output stays free for a command's own output.
    public struct Output: Sendable {
        let write: @Sendable (String, Logger.Level) -> Void

        public static let standardError = Output { line, _ in writeLine(line, to: 2) }

        public static let standardOutput = Output { line, _ in writeLine(line, to: 1) }

        /// Every line to `output`, and also, as the guide's winston setup, to `<directory>/combined.log` and (errors and
        /// worse) to `<directory>/error.log`, appended.
        public static func files(in directory: String, also output: Output) throws -> Output {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let combined = open(directory + "/combined.log", O_WRONLY | O_CREAT | O_APPEND, 0o640)
            let errors = open(directory + "/error.log", O_WRONLY | O_CREAT | O_APPEND, 0o640)
            guard combined >= 0, errors >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: directory]) }
            return Output { line, level in
                output.write(line, level)
                writeLine(line, to: combined)
                if level >= .error { writeLine(line, to: errors) }
            }
        }

        static func writeLine(_ line: String, to descriptor: Int32) {
            JSONLogHandler.lock.withLock {
                var bytes = Array(line.utf8)[...]
                while !bytes.isEmpty {
                    let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                    guard written > 0 else { return }
                    bytes = bytes.dropFirst(written)
                }
            }
        }

        /// Lines are handed to `write` (for tests).
        public static func custom(_ write: @escaping @Sendable (String) -> Void) -> Output { Output { line, _ in write(line) } }
    }

    static let lock = NIOLock()

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let service: String
    let output: Output

    public init(label: String, service: String, level: Logger.Level = .info, output: Output = .standardError) {
        self.label = label
        self.service = service
        self.logLevel = level
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        // The current span's ids, so a line can be found from a trace and a trace from a line.
        if merged["traceId"] == nil, let ids = TraceContext.ids() {
            merged["traceId"] = .string(ids.traceID)
            merged["spanId"] = .string(ids.spanID)
        }
        var object: [String: Any] = [
            "timestamp": Self.timestamp(),
            "level": event.level.rawValue,
            "service": self.service,
            "logger": self.label,
            "message": event.message.description,
        ]
        for (key, value) in merged {
            object[key] = Self.json(value)
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
            let line = String(data: data, encoding: .utf8)
        else { return }
        self.output.write(line + "\n", event.level)
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let array): array.map(json)
        case .dictionary(let dictionary): dictionary.mapValues(json)
        }
    }

    static func timestamp() -> String {
        Date.now.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

extension LoggingSystem {
    /// Installs JSON logging for a service process, once; later calls are ignored.
    public static func bootstrapJSON(service: String, level: Logger.Level, output: JSONLogHandler.Output = .standardError) {
        bootstrapOnce.withLockedValue { done in
            guard !done else { return }
            done = true
            LoggingSystem.bootstrap { label in
                JSONLogHandler(label: label, service: service, level: level, output: output)
            }
        }
    }
}

private let bootstrapOnce = NIOLockedValueBox(false)
