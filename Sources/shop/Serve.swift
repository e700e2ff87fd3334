import ArgumentParser
import ShopContracts
import ShopRuntime
import ShopSystem

/// `shop serve NAME…`: run services in this process, configured from the environment (what `shop up` starts per service).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one or more services in this process.")

    @Argument(help: "Services to run: \(ServiceName.implemented.map(\.rawValue).joined(separator: ", ")).")
    var services: [String]

    func validate() throws {
        try Self.validate(services)
    }

    /// Refuses an empty list and names that are not services (shared with `shop migrate`).
    static func validate(_ services: [String]) throws {
        guard !services.isEmpty else { throw ValidationError("name at least one service") }
        for name in services where ServiceName(rawValue: name).map(ServiceName.implemented.contains) != true {
            throw ValidationError("unknown service '\(name)'; available: \(ServiceName.implemented.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        try await ServiceMain.run(services.compactMap(ServiceName.init(rawValue:)))
    }
}
