import AsyncHTTPClient
import Foundation
import Instrumentation
import Logging
import Metrics
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import ServiceCore
import ServiceResilience
import Tracing

/// A JSON client for calling another service: carries the current correlation id and the caller's bearer token,
/// bounds every call with a timeout, and turns "could not reach it" into a 503 ``APIError``.
///
/// The service may run as several instances: from the registry (``RegistryLookup``) when it knows any, else from the
/// configured base URL, which may be a comma-separated static list (the mode used with Kubernetes DNS). Calls are
/// balanced over the instances with a circuit breaker per instance (``InstanceBalancer``); a call that could not
/// connect to one instance (so nothing was sent) goes to the next at once, whatever its method.
public struct ServiceClient: Sendable {
    /// Name of the called service, used in error messages.
    public let name: String
    /// Base URL(s) such as `http://127.0.0.1:3002`, looked up at each call (fixed, or where the service is now).
    let locate: @Sendable () -> String
    /// The first configured base URL.
    public var baseURL: String { Self.staticURLs(locate()).first ?? "" }
    /// Where the instances are, when a registry is used.
    let registry: RegistryLookup?
    /// The instances with their breakers.
    public let balancer: InstanceBalancer<String>
    let http: HTTPClient
    let timeout: TimeAmount

    /// When set, calls without an explicit bearer carry this service's own token (and `X-Service-ID`).
    public let credentials: (any ServiceCredentials)?
    /// The policies guarding the calls (see ``ResiliencePolicies`` for their order). Failures are errors reaching the
    /// service and 5xx answers. By default: up to three attempts with full-jitter backoff for calls that are safe to
    /// repeat, within a retry budget. A circuit breaker is opt-in (``breakerPolicies(name:)``): per-instance breakers
    /// belong with discovery, and a breaker shared by every call to a service also stops the compensations that must
    /// get through.
    public let policies: ResiliencePolicies<ContinuousClock>

    /// The default policies for calls to service `name`: at most 64 calls at once with 128 waiting (a bulkhead, so a
    /// slow dependency cannot take every task of the caller), safe retries within a budget.
    public static func defaultPolicies(name: String) -> ResiliencePolicies<ContinuousClock> {
        ResiliencePolicies(
            clock: ContinuousClock(),
            bulkhead: Bulkhead(name: name, maxConcurrent: 64, maxQueued: 128),
            retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(50), maxDelay: .seconds(1)),
            budget: RetryBudget(clock: ContinuousClock())
        )
    }

    /// The default policies plus a circuit breaker (5 failures in a row, or half the calls of 30 s; open 10 s) whose
    /// state changes are logged.
    public static func breakerPolicies(name: String, configuration: CircuitBreakerConfiguration = .init()) -> ResiliencePolicies<ContinuousClock> {
        var policies = defaultPolicies(name: name)
        policies.breaker = CircuitBreaker(name: name, configuration: configuration, clock: ContinuousClock()) { name, from, to in
            logger.warning("Circuit breaker changed state", metadata: ["service": "\(name)", "from": "\(from)", "to": "\(to)"])
            breakerChanged(scope: "service", target: name, to: to)
        }
        return policies
    }

    public init(
        name: String, baseURL: String, http: HTTPClient = .betweenServices, timeout: TimeAmount = .seconds(5),
        credentials: (any ServiceCredentials)? = nil, policies: ResiliencePolicies<ContinuousClock>? = nil, registry: RegistryLookup? = nil
    ) {
        self.init(name: name, locate: { baseURL }, http: http, timeout: timeout, credentials: credentials, policies: policies, registry: registry)
    }

    /// A client whose base URL `locate` gives at each call (for a service whose address is known only later).
    public init(
        name: String, locate: @escaping @Sendable () -> String, http: HTTPClient = .betweenServices, timeout: TimeAmount = .seconds(5),
        credentials: (any ServiceCredentials)? = nil, policies: ResiliencePolicies<ContinuousClock>? = nil, registry: RegistryLookup? = nil
    ) {
        self.name = name
        self.locate = locate
        self.registry = registry
        self.balancer = InstanceBalancer(name: name) { url, from, to in
            Self.logger.warning(
                "Instance circuit breaker changed state", metadata: ["service": "\(name)", "instance": "\(url)", "from": "\(from)", "to": "\(to)"])
            ServiceClient.breakerChanged(scope: "instance", target: name, to: to)
        }
        self.http = http
        self.timeout = timeout
        self.credentials = credentials
        self.policies = policies ?? Self.defaultPolicies(name: name)
    }

    static let logger = Logger(label: "service-client")

    /// `circuit_breaker_transitions_total{scope, target, to}`, and for a service's own breaker `circuit_breaker_open{target}`.
    static func breakerChanged(scope: String, target: String, to: String) {
        Counter(label: "circuit_breaker_transitions_total", dimensions: [("scope", scope), ("target", target), ("to", to)]).increment()
        if scope == "service" {
            Gauge(label: "circuit_breaker_open", dimensions: [("target", target)]).record(to == "open" ? 1 : 0)
        }
    }

    /// `service_client_requests_total{target, outcome}` and `service_client_request_duration_seconds{target}`.
    func record(_ outcome: String, since start: ContinuousClock.Instant) {
        Counter(label: "service_client_requests_total", dimensions: [("target", name), ("outcome", outcome)]).increment()
        Metrics.Timer(label: "service_client_request_duration_seconds", dimensions: [("target", name)])
            .recordNanoseconds(start.duration(to: .now).wholeNanoseconds)
    }

    /// The base URLs in a comma-separated list, without trailing slashes.
    static func staticURLs(_ list: String) -> [String] {
        list.split(separator: ",").map { url in
            let url = url.trimmingCharacters(in: .whitespaces)
            return url.hasSuffix("/") ? String(url.dropLast()) : url
        }.filter { !$0.isEmpty }
    }

    /// The instances to balance over now: the registry's when it knows any, else the configured ones.
    func currentInstances() async -> [String] {
        if let registry {
            let found = await registry.urls(of: name, credentials: credentials)
            if !found.isEmpty { return found }
        }
        return Self.staticURLs(locate())
    }

    /// True when `error` is the request's own timeout.
    static func isTimeout(_ error: any Error) -> Bool {
        guard let error = error as? HTTPClientError else { return false }
        return error == .deadlineExceeded || error == .readTimeout
    }

    /// True when `error` means the request never reached the server (the connection was refused or never made).
    static func neverSent(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode) { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        return false
    }

    /// A response from another service.
    public struct Response: Sendable {
        public var status: Int
        public var body: ByteBuffer
        /// The service that answered.
        public var service: String

        /// Decodes the body as JSON; a body that does not decode is the other service's fault (502).
        public func decode<T: Decodable>(_ type: T.Type) throws -> T {
            do {
                return try JSONDecoder().decode(T.self, from: body)
            } catch {
                throw APIError(.badGateway, "\(service) service answered an unexpected body")
            }
        }

        public var isSuccess: Bool { (200..<300).contains(status) }
    }

    /// Sends `method path` with an optional JSON `body`, as `bearer` when given.
    public func send(
        _ method: HTTPMethod,
        _ path: String,
        body: (some Encodable & Sendable)? = Optional<String>.none,
        bearer: String? = nil,
        headers: [(String, String)] = []
    ) async throws -> Response {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "accept", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let correlation = CorrelationID.current {
            request.headers.add(name: CorrelationID.headerName, value: correlation)
        }
        if let bearer {
            request.headers.add(name: "authorization", value: "Bearer \(bearer)")
        } else if let credentials {
            let token: String
            do {
                token = try await credentials.token()
            } catch {
                Self.logger.warning("No service token to call another service", metadata: ["service": "\(name)", "error": "\(error)"])
                throw APIError.unavailable("\(name) service unavailable")
            }
            request.headers.add(name: "authorization", value: "Bearer \(token)")
            request.headers.add(name: "x-service-id", value: credentials.serviceID)
        }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let safe = RetryPolicy.isSafeToRetry(method: method.rawValue, hasIdempotencyKey: request.headers.contains(name: "idempotency-key"))
        // A client span per call (retries and failover included); its context travels in the request's `traceparent`.
        return try await withSpan("\(method.rawValue) \(name)", ofKind: .client) { span in
            span.attributes["peer.service"] = name
            span.attributes["http.request.method"] = method.rawValue
            var request = request
            InstrumentationSystem.instrument.inject(span.context, into: &request.headers, using: NIOHeadersInjector())
            let response = try await call(method, path, request: request, safe: safe, span: span)
            span.attributes["http.response.status_code"] = response.status
            if response.status >= 500 { span.setStatus(.init(code: .error)) }
            return response
        }
    }

    /// The call under the policies; `span` hears which instance each attempt went to.
    func call(_ method: HTTPMethod, _ path: String, request: HTTPClientRequest, safe: Bool, span: (any Span)? = nil) async throws -> Response {
        let callStarted = ContinuousClock.now
        balancer.update(await currentInstances())
        let attempt = request
        let (http, timeout, name, balancer) = (self.http, self.timeout, self.name, self.balancer)
        do {
            let answer = try await policies.run(safeToRetry: safe) {
                // One attempt: an instance that cannot be reached is passed over for the next (nothing was sent).
                var unreachable: Set<String> = []
                while true {
                    var request = attempt
                    var callTimeout = timeout
                    if let deadline = RequestDeadline.current {
                        // Send what is left of the caller's time, and wait no longer than that.
                        let left = RequestDeadline.millisecondsLeft(until: deadline)
                        guard left > 0 else { throw RequestDeadline.Exceeded(service: name) }
                        request.headers.replaceOrAdd(name: RequestDeadline.headerName, value: String(left))
                        callTimeout = min(timeout, .milliseconds(Int64(left)))
                    }
                    guard let base = balancer.pick(excluding: unreachable) else {
                        if unreachable.isEmpty { throw CircuitBreaker<ContinuousClock>.Open(name: name) }
                        throw Unreachable(service: name)
                    }
                    request.url = base + path
                    if let span, span.isRecording { span.attributes["server.address"] = String(base.split(separator: "/").last ?? "") }
                    let started = ContinuousClock.now
                    let answer: Response
                    do {
                        let response = try await http.execute(request, timeout: callTimeout)
                        let bytes = try await response.body.collect(upTo: 8 << 20)
                        answer = Response(status: Int(response.status.code), body: bytes, service: name)
                    } catch {
                        if error is CancellationError || (callTimeout < timeout && Self.isTimeout(error)) {
                            // The caller gave up, or its deadline (shorter than ours) passed: no verdict on the instance,
                            // or any caller could eject healthy instances by asking for tiny deadlines.
                            balancer.finished(base, success: nil)
                            if error is CancellationError { throw error }
                            throw RequestDeadline.Exceeded(service: name)
                        }
                        balancer.finished(base, success: false, duration: started.duration(to: .now))
                        if Self.neverSent(error) {
                            Self.logger.debug(
                                "Instance unreachable; trying another", metadata: ["service": "\(name)", "instance": "\(base)", "error": "\(error)"])
                            unreachable.insert(base)
                            continue
                        }
                        throw error
                    }
                    // A 504 is the instance's own dependency (or the caller's deadline) timing out, not the instance failing.
                    balancer.finished(base, success: answer.status == 504 ? nil : answer.status < 500, duration: started.duration(to: .now))
                    // A 5xx counts as a failure (for the breakers and the retry); the caller still gets the answer.
                    if answer.status >= 500 { throw ServerFailure(response: answer) }
                    return answer
                }
            }
            record("success", since: callStarted)
            return answer
        } catch let failure as ServerFailure {
            record("server_error", since: callStarted)
            return failure.response
        } catch let full as Bulkhead.Full {
            record("busy", since: callStarted)
            Self.logger.warning("Too many calls to another service at once", metadata: ["service": "\(name)", "bulkhead": "\(full.name)"])
            throw APIError(.serviceUnavailable, "\(name) service busy", headers: [.retryAfter: "1"])
        } catch let exceeded as RequestDeadline.Exceeded {
            record("deadline", since: callStarted)
            throw APIError(.gatewayTimeout, "Deadline exceeded", extra: ["service": .string(exceeded.service)])
        } catch is CircuitBreaker<ContinuousClock>.Open {
            record("circuit_open", since: callStarted)
            throw APIError.unavailable("\(name) service unavailable (circuit open)")
        } catch {
            record("unreachable", since: callStarted)
            Self.logger.warning(
                "Call to another service failed",
                metadata: ["service": "\(name)", "path": "\(path)", "error": "\(error)", "correlationId": "\(CorrelationID.current ?? "")"]
            )
            throw APIError.unavailable("\(name) service unavailable")
        }
    }

    struct ServerFailure: Error {
        let response: Response
    }

    struct Unreachable: Error, CustomStringConvertible {
        let service: String
        var description: String { "no instance of \(service) could be reached" }
    }

    /// `GET path`.
    public func get(_ path: String, bearer: String? = nil) async throws -> Response {
        try await send(.GET, path, bearer: bearer)
    }
}

extension HTTPClient {
    /// The client for calls between services: a refused connection fails at once (AsyncHTTPClient's default keeps
    /// retrying the connection until the request's deadline); a slow connect is bounded by the request timeout.
    public static let betweenServices: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        // The client's own tracing is off: it would fix the tracer at this moment (before a tracer may be bootstrapped)
        // and add a second `traceparent` beside the service client's.
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }()
}

/// A service's own identity for calls to other services: its id, and a (cached) token proving it.
public protocol ServiceCredentials: Sendable {
    var serviceID: String { get }
    func token() async throws -> String
}
