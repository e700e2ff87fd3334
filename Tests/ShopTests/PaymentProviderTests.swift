import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import SQLKit
import ServiceAuth
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ServiceTesting
import ShopContracts
import Testing

@testable import PaymentProviderService
@testable import PaymentService

/// The sandbox payment provider as a client of its API sees it, and the payment service's adapter and reconciliation
/// against it: a real server with its own ledger.
@Suite struct PaymentProviderTests {
    static let key = "sk_test_provider_tests"

    /// A provider on a free port with its ledger in `databaseURL` (a SQLite file in `directory`, or a PostgreSQL schema).
    static func withProvider<T: Sendable>(
        _ engine: TestDatabase, directory: String, databaseURL: String? = nil, _ body: @Sendable (String, String) async throws -> T
    ) async throws -> T {
        let url = databaseURL ?? (engine == .postgres ? engine.freshURL(service: "provider") : "sqlite:\(directory)/provider.sqlite")
        var configuration = PaymentProviderConfiguration(environment: [:])
        configuration.settings = ServiceSettings(
            name: "payment-provider", port: 0, logLevel: .warning, dataDirectory: directory, databaseURL: url, maxBodyBytes: 64 * 1024)
        configuration.secretKey = key
        configuration.hang = .seconds(2)
        let configured = configuration
        return try await RunningService.with([
            {
                var c = configured; c.settings.onServerRunning = $0; return try await buildPaymentProvider(c)
            }
        ]) { ports in
            try await body("http://127.0.0.1:\(ports[0])", url)
        }
    }

    static func directory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("provider-\(UUID().uuidString)").path
    }

    static func post(
        _ url: String, _ path: String, form: String, key: String? = Self.key, idempotencyKey: String? = nil,
        contentType: String = "application/x-www-form-urlencoded"
    ) async throws -> InProcessShop.Reply {
        var headers: [(String, String)] = [("content-type", contentType)]
        if let key { headers.append(("authorization", "Bearer \(key)")) }
        if let idempotencyKey { headers.append(("idempotency-key", idempotencyKey)) }
        var request = HTTPClientRequest(url: url + path)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: form))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(15))
        return .init(status: response.status, headers: response.headers, body: try await response.body.collect(upTo: 1 << 20))
    }

    static func get(_ url: String, _ path: String, key: String? = Self.key) async throws -> InProcessShop.Reply {
        try await InProcessShop.call(.shared, .GET, url + path, token: key)
    }

    static let card = "card%5Bnumber%5D=4242424242424242&card%5Bexp_month%5D=12&card%5Bexp_year%5D=2030&card%5Bcvc%5D=123"

    struct ErrorBody: Decodable {
        struct Detail: Decodable {
            var type: String
            var code: String?
            var message: String
            var charge: String?
        }
        var error: Detail
    }

    func chargeCount(_ url: String) async throws -> Int {
        try await Self.get(url, "/v1/charges?limit=100").json(ChargeList.self).data.count
    }

    @Test(arguments: TestDatabase.available)
    func chargesAreIdempotentAcrossARestartAndKeysCannotBeReusedForAnotherRequest(_ engine: TestDatabase) async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let form = "amount=2999&currency=usd&\(Self.card)&metadata%5BorderId%5D=order-1"
        let (first, databaseURL) = try await Self.withProvider(engine, directory: directory) { url, databaseURL in
            // Without the key, or with another one: refused.
            #expect(try await Self.post(url, "/v1/charges", form: form, key: nil).status == .unauthorized)
            let wrong = try await Self.post(url, "/v1/charges", form: form, key: "sk_test_wrong")
            #expect(try wrong.status == .unauthorized && wrong.json(ErrorBody.self).error.type == "authentication_error")

            let charged = try await Self.post(url, "/v1/charges", form: form, idempotencyKey: "pay-1")
            #expect(charged.status == .ok)
            let charge = try charged.json(Charge.self)
            #expect(charge.amount == 2999 && charge.amountRefunded == 0 && charge.status == "succeeded" && charge.metadata == ["orderId": "order-1"])
            #expect(charge.paymentMethodDetails.card.last4 == "4242" && !String(buffer: charged.body).contains("4242424242424242"))
            // The same key and request: the first answer, nothing charged again.
            let again = try await Self.post(url, "/v1/charges", form: form, idempotencyKey: "pay-1")
            #expect(again.body == charged.body && again.headers.first(name: "idempotent-replayed") == "true")
            // The same key with another request: refused, nothing charged.
            let other = try await Self.post(url, "/v1/charges", form: form.replacingOccurrences(of: "2999", with: "3999"), idempotencyKey: "pay-1")
            #expect(try other.status == .badRequest && other.json(ErrorBody.self).error.type == "idempotency_error")
            #expect(try await chargeCount(url) == 1)
            #expect(try await Self.get(url, "/v1/charges/\(charge.id)").json(Charge.self) == charge)
            return (charged.body, databaseURL)
        }
        // A new provider process on the same ledger remembers the key.
        try await Self.withProvider(engine, directory: directory, databaseURL: databaseURL) { url, _ in
            let replay = try await Self.post(url, "/v1/charges", form: form, idempotencyKey: "pay-1")
            #expect(replay.status == .ok && replay.body == first)
            #expect(try await chargeCount(url) == 1)
        }
        await TestDatabase.drop([databaseURL])
    }

    @Test(arguments: TestDatabase.available)
    func testCardsDeclineAndRefundsNeverExceedTheCharge(_ engine: TestDatabase) async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let databaseURL = try await Self.withProvider(engine, directory: directory) { url, databaseURL in
            for (number, code) in [("4000000000000002", "card_declined"), ("4000000000009995", "insufficient_funds")] {
                let declined = try await Self.post(
                    url, "/v1/charges", form: "amount=1000&currency=usd&\(Self.card.replacingOccurrences(of: "4242424242424242", with: number))")
                #expect(declined.status.code == 402)
                let error = try declined.json(ErrorBody.self).error
                #expect(error.type == "card_error" && error.code == code)
                let failed = try await Self.get(url, "/v1/charges/\(try #require(error.charge))").json(Charge.self)
                #expect(failed.status == "failed" && failed.failureCode == code && !failed.paid)
                // Nothing to refund on a failed charge.
                #expect(try await Self.post(url, "/v1/refunds", form: "charge=\(failed.id)").status == .badRequest)
            }
            // JSON bodies work too.
            let json =
                #"{"amount":5000,"currency":"USD","card":{"number":"4111111111111111","exp_month":1,"exp_year":2031,"cvc":"999"},"metadata":{"orderId":"o-2"}}"#
            let charge = try await Self.post(url, "/v1/charges", form: json, contentType: "application/json").json(Charge.self)
            #expect(charge.amount == 5000 && charge.currency == "usd")
            let part = try await Self.post(url, "/v1/refunds", form: "charge=\(charge.id)&amount=2000", idempotencyKey: "refund-a")
            #expect(try part.json(Refund.self).amount == 2000)
            // Repeated: the same refund, not a second one.
            #expect(try await Self.post(url, "/v1/refunds", form: "charge=\(charge.id)&amount=2000", idempotencyKey: "refund-a").body == part.body)
            let tooMuch = try await Self.post(url, "/v1/refunds", form: "charge=\(charge.id)&amount=3001")
            #expect(try tooMuch.status == .badRequest && tooMuch.json(ErrorBody.self).error.code == "amount_too_large")
            let rest = try await Self.post(url, "/v1/refunds", form: "charge=\(charge.id)").json(Refund.self)
            #expect(rest.amount == 3000)
            let refunded = try await Self.get(url, "/v1/charges/\(charge.id)").json(Charge.self)
            #expect(refunded.amountRefunded == 5000 && refunded.refunded)
            #expect(try await Self.post(url, "/v1/refunds", form: "charge=\(charge.id)&amount=1").status == .badRequest)
            #expect(try await Self.post(url, "/v1/refunds", form: "charge=ch_nosuchcharge").status == .notFound)
            return databaseURL
        }
        await TestDatabase.drop([databaseURL])
    }

    @Test func chargesArePagedNewestFirst() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withProvider(.sqlite, directory: directory) { url, _ in
            var ids: [String] = []
            for n in 1...3 {
                ids.append(try await Self.post(url, "/v1/charges", form: "amount=\(n)00&currency=usd&\(Self.card)").json(Charge.self).id)
            }
            let first = try await Self.get(url, "/v1/charges?limit=2").json(ChargeList.self)
            #expect(first.data.map(\.id) == [ids[2], ids[1]] && first.hasMore)
            let second = try await Self.get(url, "/v1/charges?limit=2&starting_after=\(ids[1])").json(ChargeList.self)
            #expect(second.data.map(\.id) == [ids[0]] && !second.hasMore)
            let future = Int64(Date().timeIntervalSince1970) + 3600
            #expect(try await Self.get(url, "/v1/charges?created%5Bgte%5D=\(future)").json(ChargeList.self).data.isEmpty)
            for bad in ["limit=0", "limit=101", "limit=x", "starting_after=nope", "created%5Bgte%5D=-1", "colour=red"] {
                let reply = try await Self.get(url, "/v1/charges?\(bad)")
                #expect((400..<500).contains(reply.status.code), "\(bad)")
                #expect((try? reply.json(ErrorBody.self)) != nil, "\(bad)")
            }
        }
    }

    @Test func badRequestsGetAClearErrorAndChargeNothing() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withProvider(.sqlite, directory: directory) { url, _ in
            let valid = "amount=1000&currency=usd&\(Self.card)"
            let cases: [(String, String, UInt)] = [
                ("", "application/x-www-form-urlencoded", 400),
                ("amount=abc&currency=usd&\(Self.card)", "application/x-www-form-urlencoded", 400),
                ("amount=0&currency=usd&\(Self.card)", "application/x-www-form-urlencoded", 400),
                ("amount=1000&\(Self.card)", "application/x-www-form-urlencoded", 400),
                ("amount=1000&currency=us%24&\(Self.card)", "application/x-www-form-urlencoded", 400),
                (valid + "&amount=2000", "application/x-www-form-urlencoded", 400),
                (valid + "&colour=red", "application/x-www-form-urlencoded", 400),
                (valid + "&metadata%5Bk%5D=%0D%0Ainjected", "application/x-www-form-urlencoded", 400),
                (valid + "&bad=%ZZ", "application/x-www-form-urlencoded", 400),
                (valid.replacingOccurrences(of: "4242424242424242", with: "4242424242424241"), "application/x-www-form-urlencoded", 402),
                (valid.replacingOccurrences(of: "4242424242424242", with: "4242abcd42424242"), "application/x-www-form-urlencoded", 402),
                (valid.replacingOccurrences(of: "exp_year%5D=2030", with: "exp_year%5D=2020"), "application/x-www-form-urlencoded", 402),
                (valid.replacingOccurrences(of: "exp_month%5D=12", with: "exp_month%5D=13"), "application/x-www-form-urlencoded", 400),
                (valid + (1...21).map { "&metadata%5Bk\($0)%5D=v" }.joined(), "application/x-www-form-urlencoded", 400),
                (#"{"amount": 10.5, "currency": "usd"}"#, "application/json", 400),
                (#"{"amount": 1000"#, "application/json", 400),
                (#"[1, 2]"#, "application/json", 400),
                (#"{"card": {"number": {"deep": 1}}}"#, "application/json", 400),
                (String(repeating: "a", count: 100_000), "application/x-www-form-urlencoded", 413),
            ]
            for (body, type, status) in cases {
                let reply = try await Self.post(url, "/v1/charges", form: body, contentType: type)
                #expect(reply.status.code == status, "\(body.prefix(80)) → \(reply.status.code) \(String(buffer: reply.body).prefix(200))")
                // The provider's own error shape; a body too large is refused before it reaches the provider's routes.
                #expect(status == 413 ? reply.object["error"] != nil : (try? reply.json(ErrorBody.self)) != nil, "\(body.prefix(80))")
            }
            #expect(try await chargeCount(url) == 0)
            #expect(try await Self.post(url, "/v1/charges", form: valid, idempotencyKey: String(repeating: "k", count: 300)).status == .badRequest)
            #expect(try await chargeCount(url) == 0)
        }
    }

    // MARK: The payment service against the provider

    @Test(arguments: TestDatabase.available)
    func aChargeACrashLeftUnrecordedIsSettledWithTheProviderAndNeverChargedTwice(_ engine: TestDatabase) async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let databaseURL = try await Self.withProvider(engine, directory: directory) { url, databaseURL in
            let processor = ProviderProcessor(baseURL: url, key: { Self.key })
            try await engine.withDatabase(migrations: PaymentMigrations.all + MessagingMigrations.all) { database in
                let repository = PaymentRepository(database: database, events: OutboxPublisher(source: "payment", onCommit: {}))
                func start(_ order: String) async throws -> PaymentRecord {
                    let candidate = PaymentRecord(
                        payment: PaymentDTO(
                            id: UUID().uuidString.lowercased(), orderId: order, amount: 29.99, status: "processing",
                            card: .init(brand: "visa", last4: "4242"),
                            createdAt: Timestamp.now()
                        ),
                        userId: "user-1", fingerprint: order, processorReference: nil, response: nil
                    )
                    guard case .started(let record) = try await repository.start(candidate, idempotencyKey: "key-\(order)") else {
                        throw Unexpected()
                    }
                    return record
                }
                let card = Card(number: "4242424242424242", expiryMonth: 12, expiryYear: 2030, cvv: "123")
                // Charged at the provider, then the process died before recording it: the row says processing.
                let charged = try await start("order-charged")
                let outcome = try await processor.charge(
                    ChargeRequest(idempotencyKey: charged.payment.id, amountCents: 2999, card: card, metadata: ["paymentId": charged.payment.id])
                )
                guard case .approved(let reference) = outcome else { throw Unexpected() }
                // Declined at the provider, then the crash.
                let declined = try await start("order-declined")
                _ = try await processor.charge(
                    ChargeRequest(
                        idempotencyKey: declined.payment.id, amountCents: 2999,
                        card: Card(number: "4000000000000002", expiryMonth: 12, expiryYear: 2030, cvv: "123"),
                        metadata: ["paymentId": declined.payment.id]
                    )
                )
                // Never reached the provider.
                let untouched = try await start("order-untouched")

                let reconciler = PaymentReconciler(
                    repository: repository, processor: processor, settleAfter: .seconds(5), interval: .seconds(1), logger: Logger(label: "r"))
                // Too recent: a live request may still be charging them.
                #expect(try await reconciler.reconcile() == 0)
                #expect(try await reconciler.reconcile(now: Date() + 10) == 3)
                let settled = try #require(try await repository.find(id: charged.payment.id))
                #expect(settled.payment.status == "completed" && settled.processorReference == reference && settled.response?.status == 200)
                #expect(try await repository.find(id: declined.payment.id)?.payment.status == "declined")
                #expect(try await repository.find(id: untouched.payment.id)?.payment.status == "failed")
                // The completed payment announced itself once (payment.confirmed and PAYMENT_PROCESSED in the outbox).
                let outbox = try await database.withConnection { sql in
                    try await sql.raw("SELECT COUNT(*) AS n FROM outbox").first()?.decode(column: "n", as: Int.self) ?? 0
                }
                #expect(outbox == 2)
                // Nothing left to settle, and the provider charged exactly once.
                #expect(try await reconciler.reconcile(now: Date() + 10) == 0)
                let charges = try await Self.get(url, "/v1/charges?limit=100").json(ChargeList.self).data
                #expect(charges.filter { $0.metadata["paymentId"] == charged.payment.id }.count == 1)
                #expect(charges.count == 2)

                // A refund of a payment whose outcome was unknown asks the provider first and gives back what it took.
                try await database.withConnection { sql in
                    try await sql.raw(
                        "UPDATE payments SET status = 'failed', response_status = NULL, response_body = NULL, processor_reference = NULL WHERE id = \(bind: charged.payment.id)"
                    ).run()
                }
                let refunded = try await repository.refund(id: charged.payment.id, processor: processor)
                #expect(refunded?.payment.status == "refunded")
                #expect(try await Self.get(url, "/v1/charges/\(reference)").json(Charge.self).amountRefunded == 2999)
            }
            return databaseURL
        }
        await TestDatabase.drop([databaseURL])
    }

    /// A refund the provider refuses (the charge was refunded at the provider already, from its dashboard) is a clear
    /// 502 with the provider's message, and the payment stays as it was; it used to be a 500.
    @Test(arguments: TestDatabase.available)
    func aRefundTheProviderRefusesIsA502AndChangesNothing(_ engine: TestDatabase) async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let providerURL = try await Self.withProvider(engine, directory: directory) { url, databaseURL in
            try await Harness.with(engine) { harness in
                var configuration = harness.payment(orderURL: "http://127.0.0.1:9")
                configuration.processor = ProviderProcessor(baseURL: url, key: { Self.key })
                let order = try await harness.keys.token(ServiceName.order.rawValue, role: .service, scopes: Scope.granted(to: .order))
                try await buildPaymentService(configuration).test(.router) { client in
                    var headers = HTTPFields.bearer(order)
                    headers[.contentType] = "application/json"
                    headers[HTTPField.Name("Idempotency-Key")!] = "saga-1:chargePayment"
                    let body =
                        #"{"orderId":"0a7d9c1e-5f3b-4d2a-9e8c-000000000301","userId":"customer-1","amount":29.99,"paymentMethod":"card","cardDetails":{"number":"4242424242424242","expiryMonth":12,"expiryYear":2030,"cvv":"123"}}"#
                    let payment = try await client.execute(uri: "/internal/charges", method: .post, headers: headers, body: .json(body)) {
                        response async throws in
                        #expect(response.status == .ok)
                        return try response.json(PaymentDTO.self)
                    }
                    // Refunded at the provider, out of band.
                    let charges = try await Self.get(url, "/v1/charges?limit=100").json(ChargeList.self).data
                    let charge = try #require(charges.first { $0.metadata["paymentId"] == payment.id })
                    #expect(try await Self.post(url, "/v1/refunds", form: "charge=\(charge.id)").status == .ok)

                    try await client.execute(uri: "/internal/charges/\(payment.id)/refund", method: .post, headers: .bearer(order)) {
                        response async throws in
                        #expect(response.status == .badGateway)
                        #expect(response.errorMessage == "The payment provider refused the refund")
                        let reason = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                        #expect((reason?["reason"] as? String)?.isEmpty == false)
                    }
                    try await client.execute(
                        uri: "/internal/charges?userId=customer-1&idempotencyKey=saga-1%3AchargePayment", method: .get, headers: .bearer(order)
                    ) { response async throws in
                        #expect(try response.json(PaymentDTO.self).status == "completed")
                    }
                }
            }
            return databaseURL
        }
        await TestDatabase.drop([providerURL])
    }

    struct Unexpected: Error {}
}
