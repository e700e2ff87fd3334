import ArgumentParser
import Hummingbird
import Logging
import ShopContracts
import ShopRuntime
import ShopSystem

/// `shop migrate NAME…`: apply services' database migrations (and the shared event log's), configured from the
/// environment as `shop serve` is, then exit — a deployment's step before a rollout (a Kubernetes init container, a
/// compose service the others wait for). Safe to run twice, and beside running services.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply services' database migrations and exit.")

    @Argument(help: "Services to migrate: \(ServiceName.implemented.map(\.rawValue).joined(separator: ", ")).")
    var services: [String]

    func validate() throws {
        try Serve.validate(services)
    }

    func run() async throws {
        LoggingSystem.bootstrapJSON(service: "shop-migrate", level: .info, output: .standardOutput)
        let logger = Logger(label: "shop-migrate")
        for name in services.compactMap(ServiceName.init(rawValue:)) {
            try await ShopServices.builder(name).migrate(environment: Environment())
            logger.info("Migrations applied", metadata: ["service": "\(name.rawValue)"])
        }
    }
}
