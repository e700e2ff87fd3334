import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore

extension TestResponse {
    /// The body decoded as JSON into `T`.
    public func json<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: body)
    }

    /// The body as a JSON object.
    public func object() throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(buffer: body))
        guard let object = value as? [String: Any] else { throw NotAnObject() }
        return object
    }

    /// The `error` field of a JSON error body, or nil.
    public var errorMessage: String? {
        (try? object())?["error"] as? String
    }

    struct NotAnObject: Error {}
}

extension ByteBuffer {
    /// A JSON body from a literal string.
    public static func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
}

extension HTTPFields {
    /// `authorization: Bearer TOKEN` plus a JSON content type.
    public static func bearer(_ token: String) -> HTTPFields {
        [.authorization: "Bearer \(token)", .contentType: "application/json"]
    }

    /// A JSON content type.
    public static var json: HTTPFields { [.contentType: "application/json"] }

    /// JSON with `Authorization: Bearer token`.
    public static func json(bearer token: String) -> HTTPFields { [.contentType: "application/json", .authorization: "Bearer \(token)"] }
}
