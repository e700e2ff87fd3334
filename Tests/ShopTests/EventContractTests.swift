import Foundation
import Logging
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

/// The consumers' side of the event contracts (contracts/asyncapi.yaml): every documented example of every event and
/// queue message is published to a running shop's event log, and every consumer group the document names takes it —
/// handles it, or retries it for a reason of its own — and never dead-letters it as malformed. (The producers' side:
/// every event the tests make a service emit is checked against the document by `scripts/contracts.py events`.)
@Suite struct EventContractTests {
    @Test(arguments: TestDatabase.available)
    func everyConsumerTakesTheDocumentedExamples(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { _ in
                let configuration = try DatabaseConfiguration(url: harness.eventLogURL, service: "eventlog", dataDirectory: harness.dataDirectory)
                try await Database.with(configuration, logger: Logger(label: "log")) { database in
                    let log = EventLog(database: database, logger: Logger(label: "log"))
                    log.markPrepared()
                    var fed = 0
                    for example in AsyncAPIExamples.all where !example.consumerGroups.isEmpty {
                        var envelope = try JSONDecoder().decode(EventEnvelope.self, from: Data(example.envelope.utf8))
                        #expect(envelope.type == example.type)
                        envelope.id = UUID().uuidString.lowercased()
                        if let queue = example.queue {
                            try await log.send(envelope, to: queue)
                        } else {
                            try await log.publish(envelope)
                        }
                        for group in example.consumerGroups {
                            let outcome: (status: String, attempts: Int, lastError: String?) = try await eventually(
                                "\(group) to take the example of \(example.type)", timeout: .seconds(30)
                            ) {
                                guard let delivery = try await log.delivery(group: group, eventID: envelope.id) else { return nil }
                                return delivery.status == "done" || delivery.status == "dead" || delivery.attempts > 0 ? delivery : nil
                            }
                            #expect(
                                outcome.status != "dead",
                                "consumer \(group) dead-lettered the documented example of \(example.type): \(outcome.lastError ?? "")")
                            fed += 1
                        }
                    }
                    #expect(fed >= 12)
                }
            }
        }
    }
}
