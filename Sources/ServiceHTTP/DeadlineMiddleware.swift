import HTTPTypes
import Hummingbird
import ServiceCore

/// Reads `X-Request-Timeout-Ms`: a request that arrives with no time left is answered 504 at once without running its
/// handler; otherwise the handler runs with ``RequestDeadline/current`` set. A value that is not a whole number of
/// milliseconds is a 400.
public struct DeadlineMiddleware<Context: RequestContext>: RouterMiddleware {
    static var header: HTTPField.Name { HTTPField.Name(RequestDeadline.headerName)! }

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let value = request.headers[Self.header] else {
            return try await next(request, context)
        }
        guard let milliseconds = RequestDeadline.milliseconds(value) else {
            throw APIError(
                .badRequest, "X-Request-Timeout-Ms must be a whole number of milliseconds from 0 to \(RequestDeadline.maximumMilliseconds)")
        }
        guard milliseconds > 0 else { throw APIError(.gatewayTimeout, "Deadline exceeded before the request was handled") }
        var deadline = ContinuousClock.now.advanced(by: .milliseconds(milliseconds))
        if let outer = RequestDeadline.current, outer < deadline { deadline = outer }
        return try await RequestDeadline.$current.withValue(deadline) { try await next(request, context) }
    }
}
