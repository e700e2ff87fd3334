import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

@Suite struct DeadLetterTests {
    @Test(arguments: TestDatabase.available)
    func aMalformedEventIsDeadLetteredVisibleToAdminsAndReplayable(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await InProcessShop.with(harness) { shop in
                let log = try await EventLog.open(url: harness.eventLogURL, dataDirectory: harness.dataDirectory, logger: Logger(label: "test-log"))
                try await withThrowingTaskGroup(of: Void.self) { background in
                    if engine == .postgres {
                        for service in log.database.services { background.addTask { try? await service.run() } }
                    }
                    defer { background.cancelAll() }
                    // A user.updated whose data is not a user: the consumers must park it and go on.
                    let bad = EventEnvelope(type: EventType.userUpdated, source: "test", partitionKey: "x", data: .object(["id": .number(7)]))
                    try await log.publish(bad)
                    let user = try await shop.call(.POST, "/api/users", json: GatewayTests.signup).json(UserDTO.self)
                    let admin = try await shop.call(.POST, "/api/auth/login", json: #"{"email":"admin@shop.local","password":"AdminPass1"}"#)
                        .json(TokenResponse.self).token
                    let userToken = try await harness.keys.token(user.id)

                    try await eventually("both consumer groups to dead-letter the bad event") {
                        let letters = try await shop.call(.GET, "/api/admin/dlq", token: admin).json([EventLog.DeadLetter].self)
                        return letters.filter { $0.eventId == bad.id }.count == 2
                    }
                    let letters = try await shop.call(.GET, "/api/admin/dlq", token: admin).json([EventLog.DeadLetter].self)
                    #expect(Set(letters.map(\.group)) == ["order-service", "notification-service"])
                    #expect(letters.allSatisfy { $0.error.contains("does not decode") })
                    // The consumers went on: the next (valid) user event still reached the replica.
                    try await eventually("the replica to get the next user") {
                        try await shop.call(.GET, "/api/notifications/recipients/\(user.id)", token: userToken).status == .ok
                    }

                    #expect(try await shop.call(.GET, "/api/admin/dlq", token: userToken).status == .forbidden)
                    #expect(try await shop.call(.GET, "/api/admin/dlq").status == .unauthorized)
                    let one = try await shop.call(.GET, "/api/admin/dlq/\(letters[0].id)", token: admin).json(EventLog.DeadLetter.self)
                    #expect(one.event?.id == bad.id)
                    #expect(try await shop.call(.GET, "/api/admin/dlq/999999", token: admin).status == .notFound)
                    #expect(try await shop.call(.GET, "/api/admin/dlq/abc", token: admin).status == .badRequest)

                    let replayed = try await shop.call(.POST, "/api/admin/dlq/\(letters[0].id)/replay", token: admin)
                    #expect(replayed.object["replayed"] as? Int == 1)
                    // Still malformed, so it comes back to the dead-letter queue, with one attempt more than none.
                    try await eventually("the replayed letter to be dead again") {
                        let again = try await shop.call(.GET, "/api/admin/dlq", token: admin).json([EventLog.DeadLetter].self)
                        return again.filter { $0.eventId == bad.id }.count == 2
                    }
                    #expect(try await shop.call(.POST, "/api/admin/dlq/replay?group=order-service", token: admin).object["replayed"] as? Int == 1)
                }
                await log.database.close()
            }
        }
    }

    @Test func shopDLQListsShowsAndReplays() async throws {
        let shop = SystemTests.shopExecutable
        try #require(FileManager.default.isExecutableFile(atPath: shop.path))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dlq-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try await EventLog.open(url: "", dataDirectory: directory, logger: Logger(label: "t"))
        try await log.prepare()
        let event = EventEnvelope(type: "thing.happened", source: "test", partitionKey: "k", data: .object(["n": .number(1)]))
        try await log.send(event, to: "jobs")
        let delivery = try #require(try await log.claim(group: "jobs", limit: 1, owner: "me", visibility: .seconds(30)).first)
        try await log.deadLetter(delivery, reason: "no handler for it")
        await log.database.close()

        func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await ChildProcess.output(of: [shop.path, "dlq"] + arguments + ["--data-dir", directory])
        }
        let list = try await run(["list"])
        #expect(list.status == 0)
        #expect(list.output.contains("jobs\tthing.happened\t\(event.id)") && list.output.contains("no handler for it"))
        let show = try await run(["show", String(delivery.id)])
        #expect(show.output.contains("\"partitionkey\" : \"k\""))
        #expect(try await run(["show", "424242"]).status != 0)
        #expect(try await run(["replay"]).status != 0)
        #expect(try await run(["replay", "--all"]).output.contains("replayed 1"))
        #expect(try await run(["list"]).output.contains("no dead letters"))
    }
}
