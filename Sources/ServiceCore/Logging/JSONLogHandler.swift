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
        /// A whole line, its newline included, as UTF-8.
        let write: @Sendable ([UInt8], Logger.Level) -> Void

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

        static func writeLine(_ line: [UInt8], to descriptor: Int32) {
            JSONLogHandler.lock.withLock {
                var bytes = line[...]
                while !bytes.isEmpty {
                    let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                    guard written > 0 else { return }
                    bytes = bytes.dropFirst(written)
                }
            }
        }

        /// Lines are handed to `write` (for tests).
        public static func custom(_ write: @escaping @Sendable (String) -> Void) -> Output {
            Output { line, _ in write(String(decoding: line, as: UTF8.self)) }
        }
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
        // Metadata of the same name replaces a fixed field (`service` of a service in a shared process, say).
        var fields: [(String, Logger.Metadata.Value)] = []
        fields.reserveCapacity(5 + merged.count)
        for (key, value) in merged { fields.append((key, value)) }
        if merged["timestamp"] == nil { fields.append(("timestamp", .string(Self.timestamp()))) }
        if merged["level"] == nil { fields.append(("level", .string(event.level.rawValue))) }
        if merged["service"] == nil { fields.append(("service", .string(self.service))) }
        if merged["logger"] == nil { fields.append(("logger", .string(self.label))) }
        if merged["message"] == nil { fields.append(("message", .string(event.message.description))) }
        fields.sort { $0.0 < $1.0 }
        var line: [UInt8] = []
        line.reserveCapacity(256)
        Self.writeObject(fields, into: &line)
        line.append(UInt8(ascii: "\n"))
        self.output.write(line, event.level)
    }

    // JSON written by hand, keys sorted: JSONSerialization and Foundation's date formatting cost about 90 µs a line
    // (measured with the gateway's request log in scripts/bench-gateway.sh), more than forwarding the request.
    static func writeObject(_ fields: [(String, Logger.Metadata.Value)], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (index, field) in fields.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeString(field.0, into: &out)
            out.append(UInt8(ascii: ":"))
            writeValue(field.1, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func writeValue(_ value: Logger.Metadata.Value, into out: inout [UInt8]) {
        switch value {
        case .string(let string):
            writeString(string, into: &out)
        case .stringConvertible(let convertible):
            writeString(convertible.description, into: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeValue(value, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            writeObject(dictionary.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, into: &out)
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7), everything else as UTF-8.
    static func writeString(_ string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)],
                ])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `2026-12-05T17:00:07.123Z`: UTC, milliseconds. The part up to the seconds is made once a second.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let seconds = now.tv_sec
        let prefix = secondPrefix.withLockedValue { cached -> String in
            if cached.second == seconds { return cached.text }
            var time = tm()
            var t = seconds
            gmtime_r(&t, &time)
            func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
            let text =
                "\(time.tm_year + 1900)-\(two(time.tm_mon + 1))-\(two(time.tm_mday))T\(two(time.tm_hour)):\(two(time.tm_min)):\(two(time.tm_sec))"
            cached = (seconds, text)
            return text
        }
        let millis = Int(now.tv_nsec / 1_000_000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(prefix).\(fraction)Z"
    }

    private static let secondPrefix = NIOLockedValueBox<(second: Int, text: String)>((-1, ""))
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
