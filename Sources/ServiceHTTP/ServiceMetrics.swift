import CoreMetrics
import Hummingbird
import Metrics
import NIOCore
import Prometheus
import ServiceCore
import ServiceResilience

/// The process's metrics, exposed at `GET /metrics` in Prometheus text format. Code records through swift-metrics
/// (`Counter`, `Timer`, `Gauge`), whose backend here is swift-prometheus; every service of the process (one, or all of
/// them with `shop up --in-process`) reports into one registry, so per-service series carry a `service` label.
///
/// Names follow Prometheus conventions: units in the name (`_seconds`, `_total` for counters), label values from small
/// fixed sets (route templates, never ids).
public enum ServiceMetrics {
    /// The registry `/metrics` shows.
    public static let registry = PrometheusCollectorRegistry()

    private static let installed: Void = {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }()

    /// Makes swift-metrics record into ``registry`` (once per process; later calls do nothing). Called by a process's
    /// entry point (and by tests) before it builds anything that records: the toolkit itself never bootstraps the
    /// global system, and a library user may install another backend instead (then `/metrics` shows nothing).
    public static func bootstrap() {
        _ = installed
    }

    /// The Prometheus text exposition of every metric.
    public static func exposition() -> ByteBuffer {
        ByteBuffer(bytes: registry.emitToBuffer())
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// Counts requests and times them per route template, method and status:
/// `http_server_requests_total`, `http_server_request_duration_seconds`, and `http_server_active_requests`.
public struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let service: String
    let active: Meter

    public init(service: String) {
        self.service = service
        self.active = Meter(label: "http_server_active_requests", dimensions: [("service", service)])
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        active.increment()
        defer { active.decrement() }
        do {
            let response = try await next(request, context)
            record(context: context, method: request.method.rawValue, status: Int(response.status.code), since: start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500
            record(context: context, method: request.method.rawValue, status: status, since: start)
            throw error
        }
    }

    func record(context: Context, method: String, status: Int, since start: ContinuousClock.Instant) {
        // The route template (`/orders/{id}`), never the path itself; a request no route matched (Hummingbird names it
        // `NotFound`) is `unmatched`.
        let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        Counter(
            label: "http_server_requests_total",
            dimensions: [("service", service), ("route", route), ("method", method), ("status", String(status))]
        ).increment()
        Metrics.Timer(
            label: "http_server_request_duration_seconds", dimensions: [("service", service), ("route", route), ("method", method)]
        ).recordNanoseconds(start.duration(to: .now).wholeNanoseconds)
    }
}
