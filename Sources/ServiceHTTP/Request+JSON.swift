import Foundation
import Hummingbird
import ServiceCore

extension Request {
    /// Collects the body (up to the context's upload limit, else 413) and parses it as JSON (else 400).
    public mutating func jsonBody(context: some RequestContext) async throws -> JSONValue {
        let buffer = try await self.collectBody(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else {
            throw APIError(.badRequest, "Request body is required")
        }
        // Nesting is checked before parsing (the parser recurses); duplicate keys after (a malformed body is reported
        // as such).
        let problem =
            buffer.readableBytesView.withContiguousStorageIfAvailable { JSONShape.problem(in: $0) } ?? JSONShape.problem(in: buffer.readableBytesView)
        if case .tooDeep(let limit) = problem {
            throw APIError(.badRequest, "JSON body nested too deeply", extra: ["limit": String(limit)])
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: buffer)
        } catch {
            throw APIError(.badRequest, "Malformed JSON body")
        }
        if case .duplicateKey(let key) = problem {
            throw APIError(
                .badRequest, "Duplicate key in JSON body", details: [.init(field: String(key.prefix(100)), message: "appears more than once")])
        }
        return value
    }
}
