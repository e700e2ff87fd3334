import Foundation

/// Trace export settings from OpenTelemetry's standard environment variables.
public struct TracingConfiguration: Sendable {
    /// Where batches are posted: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or `OTEL_EXPORTER_OTLP_ENDPOINT` +
    /// `/v1/traces`.
    public var endpoint: String
    /// `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (`key=value,…`, values percent-decoded).
    public var headers: [(String, String)] = []
    /// How long one post may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds; default 10 s).
    public var requestTimeout: Duration = .seconds(10)
    public var sampler: TraceSampler = .parentBased(root: .alwaysOn)
    /// The resource's attributes: `service.name` (`OTEL_SERVICE_NAME`), `OTEL_RESOURCE_ATTRIBUTES`, and the SDK's name.
    public var resource: [(String, String)]
    /// Batching (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
    /// `OTEL_BSP_EXPORT_TIMEOUT`), with OpenTelemetry's defaults.
    public var scheduleDelay: Duration = .milliseconds(5000)
    public var maxQueueSize = 2048
    public var maxExportBatchSize = 512
    /// How long one batch may take, its retries included.
    public var exportTimeout: Duration = .milliseconds(30000)

    public init(endpoint: String, serviceName: String) {
        self.endpoint = endpoint
        self.resource = [("service.name", serviceName), ("telemetry.sdk.name", "swift-shop"), ("telemetry.sdk.language", "swift")]
    }

    /// The configuration the environment asks for; nil when it asks for no trace export (no OTLP endpoint,
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`). Throws for a value it cannot honour, naming it.
    public init?(environment: [String: String], serviceName: String) throws {
        guard environment["OTEL_SDK_DISABLED"]?.lowercased() != "true" else { return nil }
        let exporters = (environment["OTEL_TRACES_EXPORTER"] ?? "otlp").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !exporters.contains("none") else { return nil }
        guard exporters == ["otlp"] else { throw TracingConfigurationError("OTEL_TRACES_EXPORTER: only otlp (or none) is supported") }
        let endpoint: String
        if let traces = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !traces.isEmpty {
            endpoint = traces
        } else if let base = environment["OTEL_EXPORTER_OTLP_ENDPOINT"], !base.isEmpty {
            endpoint = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
        } else {
            return nil
        }
        guard let url = URL(string: endpoint), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw TracingConfigurationError("OTLP endpoint '\(endpoint)' is not an http(s) URL")
        }
        let proto = environment["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] ?? environment["OTEL_EXPORTER_OTLP_PROTOCOL"] ?? "http/protobuf"
        guard proto == "http/protobuf" else { throw TracingConfigurationError("OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported") }

        self.init(endpoint: endpoint, serviceName: environment["OTEL_SERVICE_NAME"] ?? serviceName)
        headers =
            try Self.pairs(environment["OTEL_EXPORTER_OTLP_HEADERS"], "OTEL_EXPORTER_OTLP_HEADERS")
            + Self.pairs(environment["OTEL_EXPORTER_OTLP_TRACES_HEADERS"], "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        for (key, value) in try Self.pairs(environment["OTEL_RESOURCE_ATTRIBUTES"], "OTEL_RESOURCE_ATTRIBUTES") where key != "service.name" {
            resource.append((key, value))
        }
        guard let sampler = TraceSampler(name: environment["OTEL_TRACES_SAMPLER"], argument: environment["OTEL_TRACES_SAMPLER_ARG"]) else {
            throw TracingConfigurationError("OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: unknown sampler or a ratio outside 0…1")
        }
        self.sampler = sampler
        // Bounded, so no setting can overflow a timer or ask for an allocation that cannot be made.
        func milliseconds(_ name: String) throws -> Duration? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text), (1...3_600_000).contains(value) else {
                throw TracingConfigurationError("\(name): milliseconds between 1 and 3600000")
            }
            return .milliseconds(value)
        }
        func count(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text), (1...1_000_000).contains(value) else {
                throw TracingConfigurationError("\(name): a number between 1 and 1000000")
            }
            return value
        }
        requestTimeout = try milliseconds("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") ?? milliseconds("OTEL_EXPORTER_OTLP_TIMEOUT") ?? requestTimeout
        scheduleDelay = try milliseconds("OTEL_BSP_SCHEDULE_DELAY") ?? scheduleDelay
        exportTimeout = try milliseconds("OTEL_BSP_EXPORT_TIMEOUT") ?? exportTimeout
        maxQueueSize = try count("OTEL_BSP_MAX_QUEUE_SIZE") ?? maxQueueSize
        maxExportBatchSize = min(try count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") ?? maxExportBatchSize, maxQueueSize)
    }

    /// `key=value,key=value` as OpenTelemetry writes lists in the environment (W3C Baggage syntax, percent-encoded).
    static func pairs(_ text: String?, _ name: String) throws -> [(String, String)] {
        guard let text, !text.isEmpty else { return [] }
        return try text.split(separator: ",").map { item in
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw TracingConfigurationError("\(name): an item is not key=value") }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { throw TracingConfigurationError("\(name): an empty key") }
            return (key.removingPercentEncoding ?? key, value.removingPercentEncoding ?? value)
        }
    }
}

/// A tracing setting that cannot be honoured; the message names the variable, never a header's value.
public struct TracingConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
