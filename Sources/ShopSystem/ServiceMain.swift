import Foundation
import Logging
import ServiceLifecycle
import ServiceCore
import ShopContracts

/// The whole `main` of a service process: JSON logs, configuration from the environment, run until SIGTERM.
public enum ServiceMain {
    public static func run(_ names: [ServiceName], environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        let level = environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrapJSON(service: names.map(\.rawValue).joined(separator: "+"), level: level)
        var logger = Logger(label: "shop")
        logger.logLevel = level
        var extra: [any Service] = ParentWatchdog(environment: environment).map { [$0] } ?? []
        if let tracing = try TraceExport.bootstrap(service: names.map(\.rawValue).joined(separator: "+"), environment: environment, logger: logger) {
            extra.append(tracing)
        }
        try await ServiceRunner.run(names.map { ($0, environment) }, extra: extra, logger: logger)
    }
}
