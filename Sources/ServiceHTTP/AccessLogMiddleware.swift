import Foundation
import Hummingbird
import Logging
import ServiceCore

/// One log line per request once it is answered, as the guide's logging middleware: method, route template (not the
/// path, so ids and queries stay out), status and duration, with the correlation and trace ids every line of the
/// request carries. Info level, except health checks and scrapes (debug): probes every few seconds would bury the rest.
public struct AccessLogMiddleware: RouterMiddleware {
    public typealias Context = ServiceRequestContext

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            log(request, context: context, status: Int(response.status.code), since: started)
            return response
        } catch {
            // The error middleware below answers every error; what still escapes is answered 500 by the server.
            log(request, context: context, status: (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500, since: started)
            throw error
        }
    }

    func log(_ request: Request, context: Context, status: Int, since started: ContinuousClock.Instant) {
        let path = request.uri.path
        let level: Logger.Level = path.hasPrefix("/health") || path == "/metrics" ? .debug : .info
        guard context.logger.logLevel <= level else { return }
        let elapsed = started.duration(to: .now)
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        context.logger.log(
            level: level, "Request",
            metadata: [
                "method": .string(request.method.rawValue),
                "route": .string(context.endpointPath ?? "(no route)"),
                "status": .stringConvertible(status),
                "durationMs": .string(String(format: "%.1f", milliseconds)),
            ]
        )
    }
}
