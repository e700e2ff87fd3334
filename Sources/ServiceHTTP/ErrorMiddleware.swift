import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOHTTP1
import ServiceCore

/// Turns every error into a JSON response: a client never sees a stack trace, an HTML page or an empty 500.
///
/// ``APIError`` renders as itself; Hummingbird's `HTTPError` becomes `{"error": message}`; anything else is logged and
/// answered 500. Request bodies are parsed and validated before they reach a handler (``Validation``), so a
/// `DecodingError` here means bad data from a database or another service: a server fault, not the client's.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            // The gateway's spellings for the router's own answers ("Not found", "Method not allowed").
            let message = error.body ?? Self.sentence(error.status.reasonPhrase)
            return try APIError(error.status, message, headers: error.headers).response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            let message = error.status.code >= 500 ? "Internal server error" : Self.sentence(error.status.reasonPhrase)
            return try APIError(error.status, message).response(from: request, context: context)
        } catch HTTPParserError.invalidEOFState {
            // The client (the gateway, refusing a body over its limit) closed the connection before the request's body
            // ended: nothing was read whole, nothing was written, and nobody is left to read an answer.
            context.logger.debug("Request body ended early; the client went away", metadata: ["path": "\(request.uri.path)"])
            return try APIError(.badRequest, "Request body incomplete").response(from: request, context: context)
        } catch is CancellationError {
            return try APIError(.serviceUnavailable, "Request cancelled").response(from: request, context: context)
        } catch {
            context.logger.error("Unhandled error", metadata: ["error": "\(String(reflecting: error))", "path": "\(request.uri.path)"])
            return try APIError(.internalServerError, "Internal server error").response(from: request, context: context)
        }
    }

    /// "Not Found" → "Not found": one spelling for an error whichever part of the system answers it.
    static func sentence(_ phrase: String) -> String {
        guard let first = phrase.first else { return phrase }
        return String(first) + phrase.dropFirst().lowercased()
    }
}
