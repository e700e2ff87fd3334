import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Turns every error into a JSON response: a client never sees a stack trace, an HTML page or an empty 500.
///
/// ``APIError`` renders as itself; Hummingbird's `HTTPError` becomes `{"error": message}`; a `DecodingError`
/// becomes 400 `Validation failed` with the failing field; anything else is logged and answered 500.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let message = error.body ?? error.status.reasonPhrase
            return try APIError(error.status, message, headers: error.headers).response(from: request, context: context)
        } catch let error as DecodingError {
            return try APIError.validation([Self.fieldError(error)]).response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            let message = error.status.code >= 500 ? "Internal server error" : error.status.reasonPhrase
            return try APIError(error.status, message).response(from: request, context: context)
        } catch is CancellationError {
            return try APIError(.serviceUnavailable, "Request cancelled").response(from: request, context: context)
        } catch {
            context.logger.error("Unhandled error", metadata: ["error": "\(String(reflecting: error))", "path": "\(request.uri.path)"])
            return try APIError(.internalServerError, "Internal server error").response(from: request, context: context)
        }
    }

    static func fieldError(_ error: DecodingError) -> APIError.FieldError {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return .init(field: field, message: "\"\(field)\" is required")
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return .init(field: field, message: "\"\(field)\" must be of type \(type)")
        case .valueNotFound(_, let context):
            let field = path(context.codingPath)
            return .init(field: field, message: "\"\(field)\" must not be null")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            return .init(field: field, message: field.isEmpty ? "Body is not valid JSON" : "\"\(field)\" is invalid")
        @unknown default:
            return .init(field: "", message: "Invalid body")
        }
    }
}
