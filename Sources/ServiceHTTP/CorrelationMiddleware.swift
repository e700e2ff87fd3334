import HTTPTypes
import Hummingbird
import ServiceCore

/// Accepts or generates `x-correlation-id`, puts it in the context, the logger, the task (for outgoing calls) and the response.
public struct CorrelationMiddleware: RouterMiddleware {
    public typealias Context = ServiceRequestContext

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = CorrelationID.accept(request.headers[.correlationID])
        var context = context
        context.correlationID = id
        context.logger[metadataKey: "correlationId"] = .string(id)
        var response = try await CorrelationID.$current.withValue(id) {
            try await next(request, context)
        }
        response.headers[.correlationID] = id
        return response
    }
}

extension HTTPField.Name {
    /// `x-correlation-id`
    public static let correlationID = HTTPField.Name(CorrelationID.headerName)!
}
