import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceCore
import ServiceHTTP
import ServiceLifecycle
import ShopContracts

/// The provider's API, after Stripe's: `POST /v1/charges`, `POST /v1/refunds`, `GET /v1/charges/:id`,
/// `GET /v1/charges?limit=&starting_after=&created[gte]=`, behind a secret key (`Authorization: Bearer sk_test_…`).
///
/// The documented test cards decide a charge's outcome: `4000000000000002` is declined (`card_declined`),
/// `4000000000009995` has insufficient funds (`insufficient_funds`), `4000000000000119` makes the provider hang (no
/// answer, nothing charged), any other valid number succeeds.
struct ProviderController {
    let ledger: Ledger
    let secretKey: String
    let hang: Duration

    static let declined = "4000000000000002"
    static let insufficientFunds = "4000000000009995"
    static let timesOut = "4000000000000119"

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.group("v1")
            .add(middleware: ProviderErrorMiddleware())
            .add(middleware: SecretKeyMiddleware(key: secretKey))
            .post("charges", use: createCharge)
            .get("charges", use: listCharges)
            .get("charges/:id", use: getCharge)
            .post("refunds", use: createRefund)
    }

    static func parameters(_ request: inout Request, context: ServiceRequestContext) async throws -> ProviderParameters {
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        return try ProviderParameters.parse(body, contentType: request.headers[.contentType])
    }

    /// The request's `Idempotency-Key`: printable ASCII, 1 to 255 characters.
    static func idempotencyKey(_ request: Request) throws -> String? {
        guard let key = request.headers[HTTPField.Name("Idempotency-Key")!] else { return nil }
        guard (1...255).contains(key.count), key.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) }) else {
            throw ProviderError.invalid("Idempotency-Key must be 1 to 255 printable characters", param: "Idempotency-Key")
        }
        return key
    }

    static func answer(_ answer: Ledger.Answer) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if answer.replayed { headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: answer.body)))
    }

    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    @Sendable func createCharge(request: Request, context: ServiceRequestContext) async throws -> Response {
        var request = request
        let key = try Self.idempotencyKey(request)
        let parameters = try await Self.parameters(&request, context: context)
        try parameters.allowOnly(["amount", "currency", "description", "card[number]", "card[exp_month]", "card[exp_year]", "card[cvc]", "metadata["])
        let amount = try parameters.integer("amount", in: 50...99_999_999)
        let currency = try parameters.required("currency").lowercased()
        guard currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isLetter }) else {
            throw ProviderError.invalid("Invalid currency: \(currency)", param: "currency")
        }
        let number = try parameters.required("card[number]").filter { $0 != " " }
        guard (12...19).contains(number.count), number.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ProviderError(
                status: .cardError, type: "card_error", code: "invalid_number", message: "The card number is not a valid card number.",
                param: "card[number]")
        }
        let month = Int(try parameters.integer("card[exp_month]", in: 1...12))
        let year = Int(try parameters.integer("card[exp_year]", in: 2000...2100))
        let cvc = try parameters.required("card[cvc]")
        guard (3...4).contains(cvc.count), cvc.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ProviderError(
                status: .cardError, type: "card_error", code: "invalid_cvc", message: "The card's security code is invalid.", param: "card[cvc]")
        }
        let card = CardDetails(number: number, expiryMonth: month, expiryYear: year, cvv: cvc)
        guard CardDetails.passesLuhn(number) else {
            throw ProviderError(
                status: .cardError, type: "card_error", code: "incorrect_number", message: "The card number is incorrect.", param: "card[number]")
        }
        guard !card.isExpired(on: .now) else {
            throw ProviderError(
                status: .cardError, type: "card_error", code: "expired_card", message: "The card has expired.", param: "card[exp_year]")
        }
        let metadata = try parameters.metadata()
        if number == Self.timesOut {
            // Like a processor that stopped answering: nothing is charged, the caller gives up first. A provider told to
            // stop ends the wait, so it never holds up its own shutdown.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: hang) }
            throw ProviderError(status: .serviceUnavailable, type: "api_error", message: "The provider did not process the charge in time")
        }
        let failure: (code: String, message: String)? =
            switch number {
            case Self.declined: ("card_declined", "Your card was declined.")
            case Self.insufficientFunds: ("insufficient_funds", "Your card has insufficient funds.")
            default: nil
            }
        let charge = Charge(
            id: ProviderID.make("ch"), amount: amount, amountRefunded: 0, currency: currency, status: failure == nil ? "succeeded" : "failed",
            paid: failure == nil, refunded: false, failureCode: failure?.code, failureMessage: failure?.message, metadata: metadata,
            created: Int64(Date().timeIntervalSince1970),
            paymentMethodDetails: .init(card: .init(brand: card.brand, last4: card.last4, expMonth: month, expYear: year))
        )
        let answer = try await ledger.idempotent(key: key, operation: "charges", fingerprint: parameters.fingerprint(key: secretKey)) { sql in
            try await Ledger.insert(charge, in: sql)
            if let failure {
                let error = ProviderError(status: .cardError, type: "card_error", code: failure.code, message: failure.message, charge: charge.id)
                return (402, error.body)
            }
            return (200, try Self.json(charge))
        }
        if !answer.replayed {
            context.logger.info(
                "Charge", metadata: ["chargeId": "\(charge.id)", "status": "\(charge.status)", "amount": "\(amount)", "card": "\(card)"])
        }
        return Self.answer(answer)
    }

    @Sendable func createRefund(request: Request, context: ServiceRequestContext) async throws -> Response {
        var request = request
        let key = try Self.idempotencyKey(request)
        let parameters = try await Self.parameters(&request, context: context)
        try parameters.allowOnly(["charge", "amount", "reason", "metadata["])
        let charge = try parameters.required("charge")
        guard ProviderID.isValid(charge, prefix: "ch") else { throw ProviderError.missing("charge: \(charge.prefix(64))") }
        let amount = parameters.values["amount"] == nil ? nil : try parameters.integer("amount", in: 1...99_999_999)
        let answer = try await ledger.idempotent(key: key, operation: "refunds", fingerprint: parameters.fingerprint(key: secretKey)) { sql in
            (200, try Self.json(try await Ledger.refund(charge: charge, amount: amount, in: sql)))
        }
        if !answer.replayed { context.logger.info("Refund", metadata: ["chargeId": "\(charge)", "amount": "\(amount.map(String.init) ?? "all")"]) }
        return Self.answer(answer)
    }

    @Sendable func getCharge(request: Request, context: ServiceRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard ProviderID.isValid(id, prefix: "ch"), let charge = try await ledger.charge(id: id) else {
            throw ProviderError.missing("charge: \(id.prefix(64))")
        }
        return Self.answer(.init(status: 200, body: try Self.json(charge), replayed: false))
    }

    @Sendable func listCharges(request: Request, context: ServiceRequestContext) async throws -> Response {
        // Names as written, percent-decoded (`created%5Bgte%5D` is `created[gte]`); each at most once.
        var query: [String: String] = [:]
        for (rawName, rawValue) in request.uri.queryParameters {
            guard let name = String(rawName).removingPercentEncoding, let value = String(rawValue).removingPercentEncoding,
                query.updateValue(value, forKey: name) == nil
            else { throw ProviderError.invalid("The query string is malformed") }
            guard ["limit", "starting_after", "created[gte]"].contains(name) else {
                throw ProviderError.invalid(
                    "Received unknown parameter: \(name.prefix(60))", param: String(name.prefix(60)), code: "parameter_unknown")
            }
        }
        var limit = 10
        if let text = query["limit"] {
            guard let value = Int(text), (1...100).contains(value) else {
                throw ProviderError.invalid("limit must be between 1 and 100", param: "limit")
            }
            limit = value
        }
        let after = query["starting_after"]
        if let after, !ProviderID.isValid(after, prefix: "ch") { throw ProviderError.missing("charge: \(after.prefix(64))") }
        var since: Int64?
        if let text = query["created[gte]"] {
            guard let value = Int64(text), value >= 0 else { throw ProviderError.invalid("created[gte] must be a Unix time", param: "created[gte]") }
            since = value
        }
        let list = try await ledger.charges(limit: limit, startingAfter: after, createdSince: since)
        return Self.answer(.init(status: 200, body: try Self.json(list), replayed: false))
    }
}

/// Lets through only requests carrying the secret key as a bearer token (compared in constant time).
struct SecretKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let given = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst("Bearer ".count)) : nil } ?? ""
        guard Self.equal(Array(given.utf8), Array(key.utf8)) else {
            throw ProviderError(status: .unauthorized, type: "authentication_error", message: "Invalid API Key provided")
        }
        return try await next(request, context)
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension HTTPResponse.Status {
    /// 402, which card errors answer.
    static let cardError = HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required")
}
