import Hummingbird
import Logging
import ServiceCore
import ServiceHTTP
import ServiceLifecycle
import ShopContracts

/// Running services in this process: one (`shop serve NAME`) or all of them (`shop up --in-process`).
public enum ServiceRunner {
    /// Builds `services`, each with its own environment, and runs them until SIGTERM/SIGINT; a service that returns ends all.
    /// `first` run before the services and stop after them (the trace exporter, so it still sends what they end while
    /// draining); `extra` run after them.
    public static func run(
        _ services: [(builder: any ShopServiceBuilder.Type, environment: [String: String])],
        first: [any Service] = [],
        extra: [any Service] = [],
        logger: Logger
    ) async throws {
        // The process's metrics backend, installed before anything records (the toolkit never installs it itself).
        ServiceMetrics.bootstrap()
        var built: [ServiceGroupConfiguration.ServiceConfiguration] = first.map {
            .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        for (builder, environment) in services {
            let service = try await builder.buildRegistered(environment: Environment(values: environment))
            built.append(
                .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        for service in extra {
            built.append(
                .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: built, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}
