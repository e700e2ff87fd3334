import Instrumentation
import Logging
import ServiceLifecycle

/// Tracing for a process in one call: an `OTLPTracer` bootstrapped as the process's instrument and the
/// `OTLPExporter` service that sends its spans (run it with the process's other services).
public enum OTLPTracing {
    /// Makes the tracer and its exporter without installing anything (tests, or a caller that bootstraps itself).
    public static func make(configuration: TracingConfiguration, logger: Logger) -> (tracer: OTLPTracer, exporter: OTLPExporter) {
        let buffer = SpanBuffer(maxQueueSize: configuration.maxQueueSize, batchSize: configuration.maxExportBatchSize)
        return (
            OTLPTracer(sampler: configuration.sampler, buffer: buffer), OTLPExporter(configuration: configuration, buffer: buffer, logger: logger)
        )
    }

    /// Installs the tracer as the process's instrument (once per process) and answers the exporter to run.
    public static func bootstrap(configuration: TracingConfiguration, logger: Logger) -> OTLPExporter {
        let (tracer, exporter) = make(configuration: configuration, logger: logger)
        InstrumentationSystem.bootstrap(tracer)
        return exporter
    }
}
