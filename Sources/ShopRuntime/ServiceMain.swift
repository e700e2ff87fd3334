import Foundation
import Logging
import ServiceCore
import ServiceLifecycle
import ShopContracts

/// The whole `main` of a service process: JSON logs, configuration from the environment, run until SIGTERM.
public enum ServiceMain {
    public static func run(_ builders: [any ShopServiceBuilder.Type], environment: [String: String] = ProcessInfo.processInfo.environment)
        async throws
    {
        let names = builders.map { $0.name }
        // `LOG_LEVEL_<SERVICE>` (e.g. LOG_LEVEL_ORDER=debug) beats `LOG_LEVEL`; lines go to standard output, and with
        // `LOG_DIR` also to `combined.log` and `error.log` there.
        let level =
            (names.count == 1 ? environment["LOG_LEVEL_\(names[0].rawValue.uppercased())"] : nil).flatMap(Logger.Level.init(rawValue:))
            ?? environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        let output = try environment["LOG_DIR"].map { try JSONLogHandler.Output.files(in: $0, also: .standardOutput) } ?? .standardOutput
        LoggingSystem.bootstrapJSON(service: names.map(\.rawValue).joined(separator: "+"), level: level, output: output)
        var logger = Logger(label: "shop")
        logger.logLevel = level
        let extra: [any Service] = ParentWatchdog(environment: environment).map { [$0] } ?? []
        let tracing = try TraceExport.bootstrap(service: names.map(\.rawValue).joined(separator: "+"), environment: environment, logger: logger)
        try await ServiceRunner.run(builders.map { ($0, environment) }, first: tracing.map { [$0] } ?? [], extra: extra, logger: logger)
    }
}
