import HTTPTypes
import Hummingbird
import ServiceCore

/// Answers the request's trace in a `traceresponse` header (W3C Trace Context level 2), so a client or a test can find
/// the trace, and the log lines, of any answer. Nothing is added when no tracer is installed.
public struct TraceResponseMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if let traceparent = TraceContext.traceparent() { response.headers[Self.header] = traceparent }
        return response
    }

    static var header: HTTPField.Name { HTTPField.Name("traceresponse")! }
}
