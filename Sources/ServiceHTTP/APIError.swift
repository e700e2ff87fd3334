import HTTPTypes
import Hummingbird
import ServiceCore

/// Thrown from a handler, an ``APIError`` answers with its status, headers and JSON body.
extension APIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: self.body))
    }
}
