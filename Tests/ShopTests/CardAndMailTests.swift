import Foundation
import Testing

@testable import NotificationService
@testable import PaymentService

@Suite struct CardAndMailTests {
    @Test func luhnAcceptsTheSandboxCardsAndRefusesAlteredNumbers() {
        for number in [
            "4111111111111111", "4242424242424242", SandboxProcessor.declined, SandboxProcessor.insufficientFunds, SandboxProcessor.timesOut,
            "5555555555554444", "378282246310005",
        ] {
            #expect(Card.passesLuhn(number), "\(number)")
        }
        for number in ["4111111111111112", "4242424242424241", "1234567812345678", "", "41111111111111a1"] {
            #expect(!Card.passesLuhn(number), "\(number)")
        }
    }

    @Test func brandLastFourAndDescriptionNeverShowTheNumber() {
        let card = Card(number: "5555555555554444", expiryMonth: 1, expiryYear: 2030, cvv: "987")
        #expect(card.brand == "mastercard")
        #expect(card.last4 == "4444")
        #expect(Card(number: "4111111111111111", expiryMonth: 1, expiryYear: 2030, cvv: "1").brand == "visa")
        #expect(Card(number: "378282246310005", expiryMonth: 1, expiryYear: 2030, cvv: "1").brand == "amex")
        for text in ["\(card)", String(reflecting: card), "\([card])"] {
            #expect(!text.contains("5555555555554444"))
            #expect(!text.contains("987"))
        }
    }

    @Test func aCardExpiresAfterTheLastDayOfItsMonth() throws {
        let november2026 = try #require(ISO8601DateFormatter().date(from: "2026-11-30T23:59:59Z"))
        #expect(!Card(number: "4111111111111111", expiryMonth: 11, expiryYear: 2026, cvv: "123").isExpired(on: november2026))
        #expect(Card(number: "4111111111111111", expiryMonth: 10, expiryYear: 2026, cvv: "123").isExpired(on: november2026))
        #expect(Card(number: "4111111111111111", expiryMonth: 12, expiryYear: 2025, cvv: "123").isExpired(on: november2026))
        #expect(!Card(number: "4111111111111111", expiryMonth: 1, expiryYear: 2027, cvv: "123").isExpired(on: november2026))
    }

    @Test func theSandboxAnswersARepeatedChargeOnceAndRefundsAtMostTheCharge() async throws {
        let sandbox = SandboxProcessor()
        let card = Card(number: "4242424242424242", expiryMonth: 1, expiryYear: 2030, cvv: "123")
        let first = try await sandbox.charge(ChargeRequest(idempotencyKey: "k", amountCents: 500, card: card))
        let second = try await sandbox.charge(ChargeRequest(idempotencyKey: "k", amountCents: 500, card: card))
        #expect(first == second)
        #expect(sandbox.approvedCharges == 1)
        guard case .approved(let reference) = first else {
            Issue.record("not approved: \(first)")
            return
        }
        let refund = try await sandbox.refund(reference: reference, amountCents: 500, idempotencyKey: "r")
        #expect(try await sandbox.refund(reference: reference, amountCents: 500, idempotencyKey: "r") == refund)
        await #expect(throws: ProcessorUnavailable.self) { try await sandbox.refund(reference: reference, amountCents: 1, idempotencyKey: "r2") }
        #expect(sandbox.refundedCents == 500)
        let declined = try await sandbox.charge(
            ChargeRequest(
                idempotencyKey: "d", amountCents: 500, card: Card(number: SandboxProcessor.declined, expiryMonth: 1, expiryYear: 2030, cvv: "1")))
        #expect(declined == .declined(code: "card_declined", message: "The card was declined"))
    }

    @Test func mailIsRFC5322WithNoWayToInjectAHeader() throws {
        let message = MailMessage(
            id: "order-shipped-1", fromName: "Shop", fromAddress: "shop@shop.local",
            toName: "Eve\r\nBcc: victim@example.com", toAddress: "eve@example.com\r\nX-Evil: 1",
            subject: "Grüße\r\nBcc: other@example.com", body: "Line one\nLine two", date: Date(timeIntervalSince1970: 0)
        )
        let text = RFC5322.render(message)
        let headerBlock = try #require(text.components(separatedBy: "\r\n\r\n").first)
        let headers = headerBlock.components(separatedBy: "\r\n")
        // Only the eight headers written, every continuation line folded (starting with white space).
        let names = headers.filter { !$0.hasPrefix(" ") }.map { String($0.prefix { $0 != ":" }) }
        #expect(names == ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"])
        #expect(!headerBlock.contains("\nBcc"))
        #expect(!headerBlock.contains("\nX-Evil"))
        #expect(headers.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"))
        #expect(headers.first { $0.hasPrefix("Subject: =?UTF-8?B?") } != nil)
        #expect(text.hasSuffix("\r\n\r\nLine one\r\nLine two\r\n"))
        // The encoded subject decodes back to the text without its control characters.
        let subjectLine = try #require(headers.first { $0.hasPrefix("Subject: ") })
        let encoded = subjectLine.dropFirst("Subject: =?UTF-8?B?".count).dropLast(2)
        let decoded = String(decoding: try #require(Data(base64Encoded: String(encoded))), as: UTF8.self)
        #expect(decoded == "GrüßeBcc: other@example.com")
    }

    @Test func theFileSenderWritesOneFilePerMessageId() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mail-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sender = FileMailSender(directory: directory)
        let message = MailMessage(
            id: "a-1", fromName: "Shop", fromAddress: "shop@shop.local", toName: "Jane", toAddress: "jane@example.com", subject: "Hi", body: "Hello",
            date: .now
        )
        try await sender.send(message)
        try await sender.send(message)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["a-1.eml"])
    }
}
