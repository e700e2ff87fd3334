import Foundation
import HTTPTypes
import NIOCore

/// An error a client sees as a JSON body: `{"error": message, "details": [...]?, ...extra}`.
public struct APIError: Error, Sendable {
    /// One problem with one input field, as in the guide's validation output.
    public struct FieldError: Codable, Sendable, Equatable {
        public var field: String
        public var message: String
        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    public var status: HTTPResponse.Status
    public var message: String
    public var details: [FieldError]?
    public var headers: HTTPFields
    /// Extra top-level fields of the body (for example `retryAfter`, a number of seconds).
    public var extra: [String: JSONValue]

    public init(
        _ status: HTTPResponse.Status,
        _ message: String,
        details: [FieldError]? = nil,
        headers: HTTPFields = [:],
        extra: [String: JSONValue] = [:]
    ) {
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers
        self.extra = extra
    }

    /// 400 `Validation failed` with per-field details.
    public static func validation(_ details: [FieldError]) -> APIError {
        APIError(.badRequest, "Validation failed", details: details)
    }

    /// 401 `Access denied` (no credentials).
    public static func unauthorized() -> APIError { APIError(.unauthorized, "Access denied") }

    /// 401 for a token that is present but invalid or expired (RFC 6750).
    public static func invalidToken(_ description: String = "The access token is invalid or expired") -> APIError {
        APIError(
            .unauthorized,
            "Invalid token",
            headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\", error_description=\"\(description)\""]
        )
    }

    /// 403 for a known caller that lacks permission.
    public static func forbidden(_ message: String = "Forbidden") -> APIError { APIError(.forbidden, message) }

    /// 404 for an unknown resource.
    public static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }

    /// 503 for a dependency that cannot be reached.
    public static func unavailable(_ message: String) -> APIError { APIError(.serviceUnavailable, message) }

    /// The JSON body this error renders to.
    public var body: ByteBuffer {
        var object: [String: Any] = ["error": self.message]
        if let details { object["details"] = details.map { ["field": $0.field, "message": $0.message] } }
        for (key, value) in extra { object[key] = value.foundationObject }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }
}
