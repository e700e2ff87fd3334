import Foundation
import Logging
import Metrics
import NIOHTTP1
import ServiceCore
import ServiceDiscovery
import ServiceProxy
import ServiceResilience
import ShopContracts
import Synchronization

/// Where the gateway sends each service's requests: the instances in its registry when there are any, else the
/// configured URL(s); balanced per service with a circuit breaker per instance (``InstanceBalancer``).
final class GatewayUpstreams: Sendable {
    let registry: ServiceRegistry
    let statics: [String: [ProxyUpstream]]
    let balancers: [String: InstanceBalancer<ProxyUpstream>]
    /// The registry version the balancers reflect.
    let seen = Atomic<Int>(-1)

    init(
        registry: ServiceRegistry, statics: [String: [ProxyUpstream]], strategy: InstanceBalancer<ProxyUpstream>.Strategy, maxInFlight: Int,
        logger: Logger
    ) {
        self.registry = registry
        self.statics = statics
        var balancers: [String: InstanceBalancer<ProxyUpstream>] = [:]
        for (name, upstreams) in statics {
            balancers[name] = InstanceBalancer(name: name, endpoints: upstreams, strategy: strategy, maxOutstanding: maxInFlight) {
                upstream, from, to in
                logger.warning(
                    "Instance circuit breaker changed state",
                    metadata: ["service": "\(upstream.name)", "instance": "\(upstream.host):\(upstream.port)", "from": "\(from)", "to": "\(to)"]
                )
                Counter(label: "circuit_breaker_transitions_total", dimensions: [("scope", "instance"), ("target", upstream.name), ("to", to)])
                    .increment()
            }
        }
        self.balancers = balancers
    }

    /// Brings the balancers up to date with the registry when it changed since the last look (one atomic load otherwise).
    func refresh() {
        let version = registry.version
        guard seen.load(ordering: .acquiring) != version else { return }
        for (name, balancer) in balancers {
            var registered: [ProxyUpstream] = []
            for instance in registry.instances(of: name) {
                guard let components = URLComponents(string: instance.url), let host = components.host, let port = components.port else { continue }
                // A restarted instance may be listed twice (old and new id, same address) until the old one expires.
                let upstream = ProxyUpstream(name: name, host: host, port: port)
                if !registered.contains(upstream) { registered.append(upstream) }
            }
            balancer.update(registered.isEmpty ? statics[name] ?? [] : registered)
        }
        seen.store(version, ordering: .releasing)
    }

    /// An instance of `service` for one request, counted in flight until ``finished(_:outcome:)``; nil when none can
    /// take it (every breaker open).
    func pick(_ service: String) -> ProxyUpstream? {
        refresh()
        return balancers[service]?.pick()
    }

    func finished(_ upstream: ProxyUpstream, outcome: ProxyOutcome) {
        // A 504 is the instance's own dependency timing out (or the caller's deadline), not the instance failing.
        let success: Bool? =
            switch outcome {
            case .responded(let status): status == .gatewayTimeout ? nil : status.code < 500
            case .unreachable, .failed: false
            case .abandoned, .clientDeadline: nil
            }
        balancers[upstream.name]?.finished(upstream, success: success)
        // `gateway_upstream_responses_total{target, outcome}`: 2xx…5xx, or how the exchange failed.
        let label: String =
            switch outcome {
            case .responded(let status): "\(status.code / 100)xx"
            case .unreachable: "unreachable"
            case .failed: "failed"
            case .abandoned: "abandoned"
            case .clientDeadline: "client_deadline"
            }
        Counter(label: "gateway_upstream_responses_total", dimensions: [("target", upstream.name), ("outcome", label)]).increment()
    }

    /// Another instance after those in `tried` refused the connection (at most two more tries).
    func alternative(after tried: [ProxyUpstream]) -> ProxyUpstream? {
        guard let last = tried.last, tried.count <= 2 else { return nil }
        return balancers[last.name]?.pick(excluding: Set(tried))
    }
}

/// The gateway's rate limits: one per route group (`users`, `auth`, `orders`, …), counted per client key (the user
/// id when the request carries a verified token, the IP address otherwise).
struct GatewayRateLimits: Sendable {
    let defaultLimit: RateLimit?
    let overrides: [String: RateLimit?]
    let limiter: RateLimiter

    func rate(for group: String) -> RateLimit? {
        if let override = overrides[group] { return override }
        return defaultLimit
    }

    /// Whether the counters live in a store shared with other gateways (a decision then waits for it).
    var isShared: Bool { limiter.shared != nil }

    /// Counts one request in this process's store; the headers to send, and a 429 answer when over the limit.
    func check(group: String, client: String) -> (headers: HTTPHeaders, refusal: ProxyResponse?) {
        guard let rate = rate(for: group), let decision: RateLimitDecision = limiter.take("\(group)|\(client)", rate: rate) else { return ([:], nil) }
        return answer(decision, rate: rate, group: group)
    }

    /// Counts one request in whichever store there is (the shared one: within its own timeout).
    func check(group: String, client: String) async -> (headers: HTTPHeaders, refusal: ProxyResponse?) {
        guard let rate = rate(for: group) else { return ([:], nil) }
        return answer(await limiter.take("\(group)|\(client)", rate: rate), rate: rate, group: group)
    }

    private func answer(_ decision: RateLimitDecision, rate: RateLimit, group: String) -> (headers: HTTPHeaders, refusal: ProxyResponse?) {
        var headers: HTTPHeaders = [
            "ratelimit-limit": String(rate.limit),
            "ratelimit-remaining": String(decision.remaining),
            "ratelimit-reset": String(decision.resetSeconds),
            "ratelimit-policy": "\(rate.limit);w=\(rate.windowSeconds)",
        ]
        guard !decision.allowed else { return (headers, nil) }
        Counter(label: "gateway_rate_limited_total", dimensions: [("group", group)]).increment()
        headers.add(name: "retry-after", value: String(decision.resetSeconds))
        return (headers, .json(.tooManyRequests, #"{"error":"Too many requests","retryAfter":\#(decision.resetSeconds)}"#, headers: headers))
    }
}
