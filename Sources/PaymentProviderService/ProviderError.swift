import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An error in the provider's API, answered as Stripe answers them: `{"error": {"type", "code", "message", "param"}}`.
struct ProviderError: Error, HTTPResponseError, Sendable {
    var status: HTTPResponse.Status
    /// `invalid_request_error`, `idempotency_error`, `card_error`, `authentication_error` or `api_error`.
    var type: String
    var code: String?
    var message: String
    var param: String?
    /// The failed charge a card error recorded.
    var charge: String?

    struct Body: Codable {
        struct Detail: Codable {
            var type: String
            var code: String?
            var message: String
            var param: String?
            var charge: String?
        }
        var error: Detail
    }

    var body: String {
        let detail = Body.Detail(type: type, code: code, message: message, param: param, charge: charge)
        return String(decoding: (try? JSONEncoder().encode(Body(error: detail))) ?? Data(), as: UTF8.self)
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func invalid(_ message: String, param: String? = nil, code: String = "parameter_invalid") -> ProviderError {
        ProviderError(status: .badRequest, type: "invalid_request_error", code: code, message: message, param: param)
    }

    static func missing(_ what: String) -> ProviderError {
        ProviderError(status: .notFound, type: "invalid_request_error", code: "resource_missing", message: "No such \(what)")
    }
}

/// Renders every error raised under the provider's routes in the provider's own shape (an unexpected failure too).
struct ProviderErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ProviderError {
            return try error.response(from: request, context: context)
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            return try ProviderError(status: error.status, type: "invalid_request_error", message: error.status.reasonPhrase)
                .response(from: request, context: context)
        } catch {
            context.logger.error("Provider request failed", metadata: ["error": "\(String(reflecting: error))"])
            return try ProviderError(status: .internalServerError, type: "api_error", message: "An error occurred on the provider's side")
                .response(from: request, context: context)
        }
    }
}
