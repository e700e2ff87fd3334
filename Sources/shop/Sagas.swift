import ArgumentParser
import Foundation
import Logging
import ServiceDatabase
import ServiceSaga
import ShopContracts

/// `shop saga list|show|retry`: the order service's checkout sagas, for an operator (straight from its database; a
/// retried saga is taken up by the running order service).
struct Sagas: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "saga",
        abstract: "List checkout sagas, show one's history, retry one left failed.",
        subcommands: [List.self, Show.self, Retry.self]
    )

    /// Where the order service's database is: the same flags as `shop up`.
    struct Location: ParsableArguments {
        @Option(name: .customLong("data-dir"), help: "Data folder of the system (its order.sqlite).")
        var dataDirectory = "./.shop"

        @Option(help: "The system's postgres:// URL, when it runs on PostgreSQL.")
        var database = ""

        func withAdmin<T: Sendable>(_ body: @Sendable @escaping (SagaAdmin) async throws -> T) async throws -> T {
            var quiet = Logger(label: "shop-saga")
            quiet.logLevel = .error
            let logger = quiet
            let configuration = try DatabaseConfiguration(url: database, service: ServiceName.order.rawValue, dataDirectory: dataDirectory)
            return try await Database.with(configuration, logger: logger) { database in
                try await body(SagaAdmin(database: database, name: "checkout", logger: logger))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List checkout sagas, most recent first.")
        @OptionGroup var location: Location
        @Option(help: "Only sagas with this status (running, compensating, completed, compensated, failed).") var status: String?

        func validate() throws {
            if let status, SagaStatus(rawValue: status) == nil { throw ValidationError("unknown status '\(status)'") }
        }

        func run() async throws {
            let status = self.status.flatMap(SagaStatus.init(rawValue:))
            let sagas = try await location.withAdmin { try await $0.list(status: status, limit: 1000) }
            if sagas.isEmpty { print("no sagas") }
            for saga in sagas { print("\(saga.id)\t\(saga.status.rawValue)\t\(saga.updatedAt)\t\(saga.error ?? "")") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one saga and its history (JSON).")
        @OptionGroup var location: Location
        @Argument(help: "The saga's id (the checkout id).") var id: String

        func run() async throws {
            let id = self.id
            guard let detail = try await location.withAdmin({ try await $0.detail(id: id) }) else { throw ValidationError("no saga \(id)") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(detail), as: UTF8.self))
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Retry a failed saga: its compensation runs again in the order service.")
        @OptionGroup var location: Location
        @Argument(help: "The saga's id.") var id: String

        func run() async throws {
            let id = self.id
            guard try await location.withAdmin({ try await $0.retry(id: id) }) else {
                throw ValidationError("saga \(id) is not failed (or does not exist)")
            }
            print("saga \(id) is compensating again")
        }
    }
}
