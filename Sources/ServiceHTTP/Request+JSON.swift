import Foundation
import HTTPTypes
import Hummingbird
import ServiceCore

extension Request {
    /// The media types a JSON body may be sent as.
    public static let acceptedJSONTypes = ["application/json", "application/*+json"]

    /// Collects the body (up to the context's upload limit, else 413), checks that it is sent as JSON (else 415) and
    /// parses it strictly (else 400).
    public mutating func jsonBody(context: some RequestContext) async throws -> JSONValue {
        let buffer = try await self.collectBody(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else {
            throw APIError(.badRequest, "Request body is required")
        }
        guard Self.isJSON(contentType: self.headers[.contentType]) else {
            var headers: HTTPFields = [:]
            switch self.method {
            case .post: headers[HTTPField.Name("Accept-Post")!] = Self.acceptedJSONTypes.joined(separator: ", ")
            case .patch: headers[HTTPField.Name("Accept-Patch")!] = Self.acceptedJSONTypes.joined(separator: ", ")
            default: break
            }
            throw APIError(
                .unsupportedMediaType, "Unsupported media type: send the body as application/json", headers: headers,
                extra: ["accepted": .array(Self.acceptedJSONTypes.map { .string($0) })])
        }
        // Nesting is checked before parsing (the parser recurses); duplicate keys after (a malformed body is reported
        // as such).
        let problem =
            buffer.readableBytesView.withContiguousStorageIfAvailable { JSONShape.problem(in: $0) } ?? JSONShape.problem(in: buffer.readableBytesView)
        switch problem {
        case .tooDeep(let limit):
            throw APIError(.badRequest, "JSON body nested too deeply", extra: ["limit": .integer(limit)])
        case .trailingComma:
            throw APIError(.badRequest, "Malformed JSON body")
        default:
            break
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

extension Request {
    /// True for `application/json` and `application/<anything>+json`, with any parameters (`; charset=utf-8`).
    public static func isJSON(contentType: String?) -> Bool {
        guard let contentType else { return false }
        let mediaType = (contentType.split(separator: ";", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        if mediaType == "application/json" { return true }
        return mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json") && mediaType.count > "application/+json".count
    }
}
