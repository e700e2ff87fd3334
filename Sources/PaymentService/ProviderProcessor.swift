import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ServiceResilience

/// A ``PaymentProcessor`` that talks to a payment provider over its HTTP API (the sandbox provider's, after Stripe's):
/// form-encoded `POST /v1/charges` and `POST /v1/refunds` with an `Idempotency-Key`, and the charge list to find what
/// a charge of ours became. A real provider's adapter replaces it by configuration (`PAYMENT_PROVIDER_URL`, `_KEY`).
public struct ProviderProcessor: PaymentProcessor {
    let baseURL: String
    /// The secret key, read at each call (on one machine the provider writes it into the data folder when it first starts).
    let key: @Sendable () throws -> String
    let client: HTTPClient
    /// The longest one call may take; a charge is further bounded by the payment service's processor timeout.
    let timeout: Duration

    public init(baseURL: String, key: @escaping @Sendable () throws -> String, client: HTTPClient = .shared, timeout: Duration = .seconds(30)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.key = key
        self.client = client
        self.timeout = timeout
    }

    /// The provider refused a request as malformed or unauthorised (a 4xx other than a card error): nothing was charged,
    /// and repeating it will not help.
    public struct Refused: Error, CustomStringConvertible {
        public var status: Int
        public var code: String?
        public var message: String
        public var description: String { "payment provider refused the request (\(status)\(code.map { " \($0)" } ?? "")): \(message)" }
    }

    struct ChargeBody: Decodable {
        var id: String
        var status: String
        var failure_code: String?
        var failure_message: String?
        var metadata: [String: String]
    }

    struct ErrorBody: Decodable {
        struct Detail: Decodable {
            var type: String
            var code: String?
            var message: String
        }
        var error: Detail
    }

    struct ListBody: Decodable {
        var data: [ChargeBody]
        var has_more: Bool
    }

    struct RefundBody: Decodable {
        var id: String
    }

    public func charge(_ request: ChargeRequest) async throws -> ChargeOutcome {
        var form: [(String, String)] = [
            ("amount", String(request.amountCents)), ("currency", "usd"), ("card[number]", request.card.number),
            ("card[exp_month]", String(request.card.expiryMonth)), ("card[exp_year]", String(request.card.expiryYear)),
            ("card[cvc]", request.card.cvv),
        ]
        form += request.metadata.sorted { $0.key < $1.key }.map { ("metadata[\($0.key)]", $0.value) }
        let (status, body) = try await send(.POST, "/v1/charges", form: form, idempotencyKey: request.idempotencyKey)
        switch status {
        case 200:
            return .approved(reference: try JSONDecoder().decode(ChargeBody.self, from: body).id)
        case 402:
            let error = try JSONDecoder().decode(ErrorBody.self, from: body).error
            return .declined(code: error.code ?? "card_declined", message: error.message)
        default:
            throw Self.failure(status: status, body: body)
        }
    }

    public func refund(reference: String, amountCents: Int64, idempotencyKey: String) async throws -> String {
        let (status, body) = try await send(
            .POST, "/v1/refunds", form: [("charge", reference), ("amount", String(amountCents))], idempotencyKey: idempotencyKey
        )
        guard status == 200 else { throw Self.failure(status: status, body: body) }
        return try JSONDecoder().decode(RefundBody.self, from: body).id
    }

    public func lookup(paymentId: String, since: Date) async throws -> ChargeOutcome? {
        var after: String?
        // Newest first, from `since` on: the charge made for the payment, if any, carries its id in the metadata.
        while true {
            var path = "/v1/charges?limit=100&created%5Bgte%5D=\(Int64(since.timeIntervalSince1970))"
            if let after { path += "&starting_after=\(after)" }
            let (status, body) = try await send(.GET, path, form: nil, idempotencyKey: nil)
            guard status == 200 else { throw Self.failure(status: status, body: body) }
            let page = try JSONDecoder().decode(ListBody.self, from: body)
            if let charge = page.data.first(where: { $0.metadata["paymentId"] == paymentId }) {
                return charge.status == "succeeded"
                    ? .approved(reference: charge.id)
                    : .declined(code: charge.failure_code ?? "card_declined", message: charge.failure_message ?? "The card was declined")
            }
            guard page.has_more, let last = page.data.last else { return nil }
            after = last.id
        }
    }

    /// A 5xx or an unreadable answer: the outcome is unknown (``ProcessorUnavailable``); a 4xx is ``Refused``.
    static func failure(status: Int, body: ByteBuffer) -> any Error {
        let error = try? JSONDecoder().decode(ErrorBody.self, from: body).error
        if (400..<500).contains(status) {
            return Refused(status: status, code: error?.code, message: error?.message ?? "HTTP \(status)")
        }
        return ProcessorUnavailable(description: "payment provider answered \(status)\(error.map { ": \($0.message)" } ?? "")")
    }

    func send(_ method: HTTPMethod, _ path: String, form: [(String, String)]?, idempotencyKey: String?) async throws -> (Int, ByteBuffer) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "authorization", value: "Bearer \(try key())")
        if let idempotencyKey { request.headers.add(name: "idempotency-key", value: idempotencyKey) }
        if let form {
            request.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")))
        }
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(timeout.wholeNanoseconds))
            return (Int(response.status.code), try await response.body.collect(upTo: 1 << 20))
        } catch let error as CancellationError {
            throw error
        } catch {
            throw ProcessorUnavailable(description: "payment provider unreachable: \(error)")
        }
    }

    static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
