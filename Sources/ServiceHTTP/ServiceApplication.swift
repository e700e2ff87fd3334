import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceCore
import ServiceLifecycle

/// What every shop-style service gets in one call, as eShop's `ServiceDefaults`: JSON errors, correlation ids,
/// request logs, body limits and the three health routes.
public enum ServiceApplication {
    /// The route tables of routers made by ``makeRouter(settings:health:)`` and not yet made into applications.
    static let routeTables = NIOLockedValueBox<[ObjectIdentifier: RouteTable]>([:])

    /// A logger for service `name` whose lines carry `service: name`.
    public static func logger(for settings: ServiceSettings) -> Logger {
        var logger = Logger(label: settings.name)
        logger.logLevel = settings.logLevel
        logger[metadataKey: "service"] = .string(settings.name)
        return logger
    }

    /// The routes of every application made so far, by service name: each path pattern (`/users/{id}`) and its methods.
    /// The contract tests compare them with the services' OpenAPI documents.
    static let registeredRoutes = NIOLockedValueBox<[String: [String: Set<String>]]>([:])

    /// The routes the applications of service `name` answer (none made yet: empty): path pattern → methods, HEAD only
    /// where the service registered it itself.
    public static func routes(ofService name: String) -> [String: Set<String>] {
        registeredRoutes.withLockedValue { $0[name] ?? [:] }
    }

    /// A router with the standard middleware stack, `/health`, `/health/live`, `/health/ready`, `/metrics` and, given
    /// one, the service's OpenAPI document at `/openapi.json`.
    public static func makeRouter(settings: ServiceSettings, health: HealthChecker, openAPI: String? = nil) -> Router<ServiceRequestContext> {
        // HEAD answers wherever GET does (RFC 9110 §9.1), as the 405 answers' `Allow` says.
        let router = Router(context: ServiceRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: RequestMetricsMiddleware(service: settings.name))
        // A server span per request, named by its route, continuing the caller's trace (`traceparent`).
        router.add(middleware: TracingMiddleware())
        router.add(middleware: TraceResponseMiddleware())
        router.add(middleware: CorrelationMiddleware())
        router.add(middleware: AccessLogMiddleware())
        if let recorder = ResponseRecorder.fromEnvironment {
            router.add(middleware: ResponseRecorderMiddleware(service: settings.name, recorder: recorder))
        }
        router.add(middleware: ErrorMiddleware())
        let routes = RouteTable()
        routeTables.withLockedValue { $0[ObjectIdentifier(router)] = routes }
        router.add(middleware: MethodNotAllowedMiddleware(table: routes))
        router.add(middleware: RequestLimitMiddleware(maxBodyBytes: settings.maxBodyBytes))
        router.add(middleware: DeadlineMiddleware())
        HealthController(service: settings.name, checker: health).addRoutes(to: router)
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: ServiceMetrics.contentType, .cacheControl: "no-store"],
                body: .init(byteBuffer: ServiceMetrics.exposition())
            )
        }
        if let openAPI {
            let document = ByteBuffer(string: openAPI)
            router.get("openapi.json") { _, _ in
                Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: document))
            }
        }
        return router
    }

    /// The application serving `router` on the settings' address, running `services` (in order) alongside.
    public static func makeApplication(
        router: Router<ServiceRequestContext>,
        settings: ServiceSettings,
        services: [any Service] = [],
        logger: Logger
    ) -> Application<RouterResponder<ServiceRequestContext>> {
        // Every route is added by now: the 405 answers can know them.
        if let routes = routeTables.withLockedValue({ $0.removeValue(forKey: ObjectIdentifier(router)) }) {
            routes.fill(from: router)
        }
        var routes: [String: Set<String>] = [:]
        for route in router.routes { routes[route.path.description, default: []].insert(route.method.rawValue) }
        registeredRoutes.withLockedValue { $0[settings.name] = routes }
        let onServerRunning = settings.onServerRunning
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "shop-\(settings.name)"),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? settings.port) },
            logger: logger
        )
    }
}

/// Sets the request body limit from the service settings; a declared `Content-Length` over it is refused at once (413).
public struct RequestLimitMiddleware: RouterMiddleware {
    public typealias Context = ServiceRequestContext
    let maxBodyBytes: Int

    public init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
            throw APIError(.contentTooLarge, "Request body too large", extra: ["limit": .integer(maxBodyBytes)])
        }
        var context = context
        context.maxUploadSize = maxBodyBytes
        return try await next(request, context)
    }
}
