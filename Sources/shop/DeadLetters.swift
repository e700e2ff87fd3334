import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import ServiceMessaging

/// `shop dlq list|show|replay`: inspect and replay the event log's dead letters.
struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect and replay dead letters of the event log.",
        subcommands: [List.self, Show.self, Replay.self]
    )

    /// Where the event log is: the same flags as `shop up`.
    struct Location: ParsableArguments {
        @Option(name: .customLong("data-dir"), help: "Data folder of the system (its eventlog.sqlite).")
        var dataDirectory = "./.shop"

        @Option(help: "The system's postgres:// URL, when it runs on PostgreSQL.")
        var database = ""

        /// Opens the log, runs `body`, closes it.
        func withLog<T: Sendable>(_ body: @Sendable (EventLog) async throws -> T) async throws -> T {
            var logger = Logger(label: "shop-dlq")
            logger.logLevel = .error
            let log = try await EventLog.open(url: database, dataDirectory: dataDirectory, logger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                for service in log.services where database.hasPrefix("postgres") {
                    group.addTask { try? await service.run() }
                }
                defer { group.cancelAll() }
                try await log.prepare()
                let result = try await body(log)
                await log.database.close()
                return result
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters.")
        @OptionGroup var location: Location
        @Option(help: "Only this consumer group or queue.") var group: String?

        func run() async throws {
            let group = self.group
            let letters = try await location.withLog { try await $0.deadLetters(group: group, limit: 1000) }
            if letters.isEmpty { print("no dead letters") }
            for letter in letters {
                print("\(letter.id)\t\(letter.group)\t\(letter.eventType)\t\(letter.eventId)\tattempts=\(letter.attempts)\t\(letter.error)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter with its event (JSON).")
        @OptionGroup var location: Location
        @Argument(help: "The dead letter's id (from `shop dlq list`).") var id: Int64

        func run() async throws {
            let id = self.id
            guard let letter = try await location.withLog({ try await $0.deadLetter(id: id) }) else {
                throw ValidationError("no dead letter \(id)")
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(letter), as: UTF8.self))
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put dead letters back in line: one by id, or --all.")
        @OptionGroup var location: Location
        @Argument(help: "The dead letter's id.") var id: Int64?
        @Flag(help: "Replay every dead letter (of --group, if given).") var all = false
        @Option(help: "With --all: only this consumer group or queue.") var group: String?

        func validate() throws {
            guard (id != nil) != all else { throw ValidationError("give a dead letter id or --all") }
        }

        func run() async throws {
            let (id, group) = (self.id, self.group)
            let count = try await location.withLog { try await $0.replay(id: id, group: group) }
            if let id, count == 0 { throw ValidationError("no dead letter \(id)") }
            print("replayed \(count)")
        }
    }
}
