import Logging
import OTel
import ServiceLifecycle

/// Exports this process's spans over OTLP/HTTP (protobuf) with swift-otel when the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the rest of OpenTelemetry's
/// environment (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SERVICE_NAME`, …) applies as usual. Metrics stay
/// on `/metrics` (Prometheus) and logs on standard error (JSON, with trace and span ids); only traces go out.
/// Without an endpoint nothing is installed: spans are no-ops.
public enum TraceExport {
    public static func bootstrap(service: String, environment: [String: String], logger: Logger) throws -> (any Service)? {
        guard environment["OTEL_EXPORTER_OTLP_ENDPOINT"] != nil || environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != nil else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "shop-\(service)"
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.diagnosticLogger = .custom(logger)
        let service = try OTel.bootstrap(configuration: configuration, environment: environment)
        logger.info("Exporting traces over OTLP/HTTP", metadata: ["endpoint": "\(environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? "")"])
        return service
    }
}
