import Foundation
import Logging
import NotificationService
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

/// Mail through a real SMTP server (aiosmtpd): sent after the notification committed, once per notification, whatever
/// happens to the batch it came in; retried when the server says "later", dead-lettered when it says "never".
@Suite struct MailDeliveryTests {
    static func fast(maxAttempts: Int) -> ConsumerConfiguration {
        ConsumerConfiguration(
            prefetch: 16, maxAttempts: maxAttempts, baseBackoff: .milliseconds(20), maxBackoff: .milliseconds(50), pollInterval: .milliseconds(20))
    }

    /// A notification service mailing through `smtpURL`, and the harness's event log to feed it.
    static func withNotifications(
        _ engine: TestDatabase, smtpURL: String, mailAttempts: Int = 5, _ body: @Sendable @escaping (EventLog) async throws -> Void
    ) async throws {
        try await Harness.with(engine) { harness in
            var configuration = harness.notification()
            configuration.smtpURL = smtpURL
            configuration.consumer = fast(maxAttempts: 2)
            var mail = fast(maxAttempts: mailAttempts)
            mail.visibilityTimeout = .seconds(60)
            configuration.mailConsumer = mail
            let configured = configuration
            try await RunningService.with([
                {
                    var c = configured; c.settings.onServerRunning = $0; return try await buildNotificationService(c)
                }
            ]) { _ in
                let logConfiguration = try DatabaseConfiguration(url: harness.eventLogURL, service: "eventlog", dataDirectory: harness.dataDirectory)
                try await Database.with(logConfiguration, logger: Logger(label: "log")) { database in
                    let log = EventLog(database: database, logger: Logger(label: "log"))
                    log.markPrepared()
                    try await body(log)
                }
            }
        }
    }

    /// Users the notification service knows (through `user.created`), once it has them all.
    static func addRecipients(_ count: Int, to log: EventLog) async throws -> [UserChanged] {
        let users = (0..<count).map {
            UserChanged(id: "user-\($0)", email: "buyer\($0)@example.com", name: "Buyer \($0)", updatedAt: Timestamp.now())
        }
        for user in users {
            try await log.publish(try EventEnvelope(type: EventType.userCreated, source: "user-service", partitionKey: user.id, payload: user))
        }
        try await eventually("the replica to know every recipient") {
            try await log.counts(group: "notification-service")["done"] == count
        }
        return users
    }

    static func note(_ user: String, order: String) throws -> (envelope: EventEnvelope, queue: String?) {
        let note = OrderNotification(kind: .orderConfirmed, userId: user, orderId: order, details: ["items": "1 × Mouse", "total": "29.99"])
        return (
            try EventEnvelope(type: OrderNotification.eventType, source: "order-service", partitionKey: order, payload: note),
            Queue.orderNotifications
        )
    }

    static func drained(_ log: EventLog, _ group: String) async throws -> Bool {
        let counts = try await log.counts(group: group)
        return (counts["ready"] ?? 0) + (counts["inflight"] ?? 0) == 0
    }

    @Test(arguments: TestDatabase.available)
    func aBatchWithOneFailingMessageMailsEveryOtherOneExactlyOnce(_ engine: TestDatabase) async throws {
        try await SMTPTestServer.with { smtp in
            try await Self.withNotifications(engine, smtpURL: "smtp://127.0.0.1:\(smtp.port)") { log in
                let users = try await Self.addRecipients(15, to: log)
                // Sixteen messages in one append (one batch for the consumer); the one for a stranger fails every time.
                var batch = try users.map { try Self.note($0.id, order: "order-\($0.id)") }
                batch.insert(try Self.note("stranger", order: "order-stranger"), at: 7)
                try await log.append(batch)
                try await eventually("the stranger's message to be dead-lettered and the mail queue to drain", timeout: .seconds(30)) {
                    let dead = try await log.deadLetters(group: Queue.orderNotifications)
                    let drained = try await Self.drained(log, Queue.orderNotifications)
                    let mailed = try smtp.messages().count
                    return dead.count == 1 && drained && mailed >= 15
                }
                try await eventually("the mail queue to drain") { try await Self.drained(log, "notification-mail") }
                let messages = try smtp.messages()
                #expect(messages.count == 15)
                #expect(Set(messages.flatMap(\.recipients)) == Set(users.map(\.email)))
                let ids = messages.compactMap { $0.text.split(separator: "\r\n").first { $0.hasPrefix("Message-ID: ") } }
                #expect(Set(ids).count == 15)
                let first = try #require(messages.first { $0.recipients == ["buyer0@example.com"] })
                #expect(first.from == "shop@shop.local")
                #expect(first.text.contains("To: \"Buyer 0\" <buyer0@example.com>\r\n"))
                #expect(first.text.contains("Subject: Your order order-us is confirmed\r\n"))
                #expect(first.text.contains("\r\n\r\nHello Buyer 0,\r\n"))
                #expect(try await log.deadLetters(group: Queue.orderNotifications).first?.eventId == batch[7].envelope.id)
                #expect(try await log.deadLetters(group: "notification-mail").isEmpty)
            }
        }
    }

    @Test func aServerThatSaysLaterGetsTheMailOnceAndOneThatSaysNeverDeadLettersIt() async throws {
        try await SMTPTestServer.with(["--mode", "tempfail-first"]) { smtp in
            try await Self.withNotifications(.sqlite, smtpURL: "smtp://127.0.0.1:\(smtp.port)") { log in
                let users = try await Self.addRecipients(1, to: log)
                try await log.append([try Self.note(users[0].id, order: "order-later")])
                try await eventually("the mail to arrive after the 451", timeout: .seconds(20)) { try smtp.messages().count == 1 }
                try await eventually("the mail queue to drain") { try await Self.drained(log, "notification-mail") }
                #expect(try smtp.messages().count == 1)
                #expect(try await log.deadLetters(group: "notification-mail").isEmpty)
            }
        }
        try await SMTPTestServer.with(["--mode", "reject"]) { smtp in
            try await Self.withNotifications(.sqlite, smtpURL: "smtp://127.0.0.1:\(smtp.port)") { log in
                let users = try await Self.addRecipients(1, to: log)
                try await log.append([try Self.note(users[0].id, order: "order-never")])
                try await eventually("the refused mail to be dead-lettered") { try await log.deadLetters(group: "notification-mail").count == 1 }
                let letter = try #require(try await log.deadLetters(group: "notification-mail").first)
                // At once, not after its attempts: a 5xx is final.
                #expect(letter.attempts == 1)
                #expect(letter.error.contains("554"))
                #expect(try smtp.messages().isEmpty)
            }
        }
    }

    @Test func aServerThatNeverAnswersIsRetriedThenDeadLettered() async throws {
        try await SMTPTestServer.with(["--mode", "silent"]) { smtp in
            try await Self.withNotifications(.sqlite, smtpURL: "smtp://127.0.0.1:\(smtp.port)?timeout_ms=200", mailAttempts: 2) { log in
                let users = try await Self.addRecipients(1, to: log)
                try await log.append([try Self.note(users[0].id, order: "order-silent")])
                try await eventually("the mail to be dead-lettered after its attempts", timeout: .seconds(20)) {
                    try await log.deadLetters(group: "notification-mail").count == 1
                }
                let letter = try #require(try await log.deadLetters(group: "notification-mail").first)
                #expect(letter.attempts == 2)
                #expect(letter.error.contains("did not answer in time"))
            }
        }
    }
}
