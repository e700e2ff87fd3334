import Logging
import ServiceLifecycle
import ServiceTracing

/// Exports this process's spans over OTLP/HTTP (protobuf) when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the rest of OpenTelemetry's environment (`OTEL_TRACES_SAMPLER`,
/// `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SERVICE_NAME`, `OTEL_BSP_*`, …) applies as usual. Metrics stay on `/metrics`
/// (Prometheus) and logs on standard output (JSON, with trace and span ids); only traces go out. Without an endpoint
/// nothing is installed: spans are no-ops.
public enum TraceExport {
    public static func bootstrap(service: String, environment: [String: String], logger: Logger) throws -> (any Service)? {
        guard let configuration = try TracingConfiguration(environment: environment, serviceName: "shop-\(service)") else { return nil }
        let exporter = OTLPTracing.bootstrap(configuration: configuration, logger: logger)
        logger.info("Exporting traces over OTLP/HTTP", metadata: ["endpoint": "\(configuration.endpoint)", "sampler": "\(configuration.sampler)"])
        return exporter
    }
}
