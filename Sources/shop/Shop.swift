import ArgumentParser

/// `shop`: run the whole shop on one machine, or one of its services.
@main
struct Shop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Swift microservices shop.",
        subcommands: [Up.self, Serve.self, Migrate.self, Probe.self, Status.self, DeadLetters.self, Sagas.self, Keys.self, Bench.self],
        defaultSubcommand: Up.self
    )
}
