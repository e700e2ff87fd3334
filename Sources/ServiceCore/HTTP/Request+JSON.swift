import Foundation
import Hummingbird

extension Request {
    /// Collects the body (up to the context's upload limit, else 413) and parses it as JSON (else 400).
    public mutating func jsonBody(context: some RequestContext) async throws -> JSONValue {
        let buffer = try await self.collectBody(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else {
            throw APIError(.badRequest, "Request body is required")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: buffer)
        } catch {
            throw APIError(.badRequest, "Malformed JSON body")
        }
    }
}
