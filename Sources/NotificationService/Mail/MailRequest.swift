import Foundation

/// A mail the notification service has decided to send: the intent, recorded through the outbox in the transaction
/// that records the notification, and performed after commit by the `notification-mail` queue's effect.
struct MailRequest: Codable, Sendable, Equatable {
    /// The notification's id: the message's `Message-ID`, the same on every attempt.
    var id: String
    var toName: String
    var toAddress: String
    var subject: String
    var body: String
    /// When the notification was recorded (the message's `Date`).
    var date: String

    /// The queue message type.
    static let eventType = "mail.requested"
    /// The notification service's own work queue of mail to send.
    static let queue = "notification-mail"

    /// The message to send, from `from`.
    func message(from: (name: String, address: String)) -> MailMessage {
        MailMessage(
            id: id, fromName: from.name, fromAddress: from.address, toName: toName, toAddress: toAddress, subject: subject, body: body,
            date: (try? Date(date, strategy: .iso8601)) ?? Date(timeIntervalSince1970: 0)
        )
    }
}
