import NIOConcurrencyHelpers
import ServiceResilience

/// Spreads calls over the instances of one service, each behind its own circuit breaker, so one bad instance is
/// ejected while the others keep serving. Used by the gateway (endpoints are upstreams) and by service clients
/// (endpoints are base URLs).
public final class InstanceBalancer<Endpoint: Hashable & Sendable>: Sendable {
    public enum Strategy: String, Sendable {
        /// Each instance in turn.
        case roundRobin = "round-robin"
        /// The instance with the fewest calls in flight (ties in turn), which steers around a slow instance.
        case leastOutstanding = "least-outstanding"
    }

    struct Slot {
        var outstanding = 0
        var breaker: CircuitBreakerMachine<ContinuousClock.Instant>
    }

    struct State {
        var endpoints: [Endpoint] = []
        var slots: [Endpoint: Slot] = [:]
        var next = 0
    }

    public let name: String
    public let strategy: Strategy
    let breaker: CircuitBreakerConfiguration
    let state = NIOLockedValueBox(State())
    let onChange: @Sendable (_ endpoint: Endpoint, _ from: String, _ to: String) -> Void

    /// The default per-instance breaker: 5 failures in a row (or half of at least 20 calls in 30 s) eject the instance
    /// for 5 s, then one trial call decides.
    public static var defaultBreaker: CircuitBreakerConfiguration { .init(consecutiveFailures: 5, openDuration: .seconds(5), halfOpenCalls: 1) }

    public init(
        name: String, endpoints: [Endpoint] = [], strategy: Strategy = .leastOutstanding,
        breaker: CircuitBreakerConfiguration = InstanceBalancer.defaultBreaker,
        onChange: @escaping @Sendable (_ endpoint: Endpoint, _ from: String, _ to: String) -> Void = { _, _, _ in }
    ) {
        self.name = name
        self.strategy = strategy
        self.breaker = breaker
        self.onChange = onChange
        update(endpoints)
    }

    /// Replaces the instance list; instances still listed keep their breaker and in-flight count.
    public func update(_ endpoints: [Endpoint]) {
        let configuration = breaker
        state.withLockedValue { state in
            guard state.endpoints != endpoints else { return }
            var slots: [Endpoint: Slot] = [:]
            for endpoint in endpoints {
                slots[endpoint] = state.slots[endpoint] ?? Slot(breaker: CircuitBreakerMachine(configuration: configuration))
            }
            state.endpoints = endpoints
            state.slots = slots
        }
    }

    public var endpoints: [Endpoint] { state.withLockedValue { $0.endpoints } }

    /// An instance to call now, counted as in flight until ``finished(_:success:)``; nil when there is none, or every
    /// instance's breaker is open. `excluding` are instances this call already failed to reach.
    public func pick(excluding: Set<Endpoint> = []) -> Endpoint? {
        let now = ContinuousClock.now
        var changed: (Endpoint, String, String)?
        let chosen = state.withLockedValue { state -> Endpoint? in
            let count = state.endpoints.count
            guard count > 0 else { return nil }
            if count == 1 {
                // The common case (one instance) without building an order.
                let endpoint = state.endpoints[0]
                guard !excluding.contains(endpoint) else { return nil }
                let before = state.slots[endpoint]!.breaker.state
                guard state.slots[endpoint]!.breaker.acquire(now: now) == .allow else { return nil }
                state.slots[endpoint]!.outstanding += 1
                let after = state.slots[endpoint]!.breaker.state
                if before.name != after.name { changed = (endpoint, before.name, after.name) }
                return endpoint
            }
            let start = state.next % count
            state.next = (start + 1) % count
            var order = (0..<count).map { state.endpoints[(start + $0) % count] }
            if excluding.isEmpty == false { order.removeAll { excluding.contains($0) } }
            if strategy == .leastOutstanding {
                // Stable: equal counts keep the round-robin order.
                order = order.enumerated().sorted { (state.slots[$0.element]!.outstanding, $0.offset) < (state.slots[$1.element]!.outstanding, $1.offset) }
                    .map(\.element)
            }
            for endpoint in order {
                let before = state.slots[endpoint]!.breaker.state.name
                guard state.slots[endpoint]!.breaker.acquire(now: now) == .allow else { continue }
                state.slots[endpoint]!.outstanding += 1
                let after = state.slots[endpoint]!.breaker.state.name
                if before != after { changed = (endpoint, before, after) }
                return endpoint
            }
            return nil
        }
        if let changed { onChange(changed.0, changed.1, changed.2) }
        return chosen
    }

    /// The call to `endpoint` ended: `success` counts for its breaker; nil (the caller gave up) counts for nothing.
    public func finished(_ endpoint: Endpoint, success: Bool?, duration: Duration = .zero) {
        let now = ContinuousClock.now
        let change = state.withLockedValue { state -> (String, String)? in
            guard var slot = state.slots[endpoint] else { return nil }
            slot.outstanding = max(0, slot.outstanding - 1)
            let before = slot.breaker.state.name
            if let success { slot.breaker.record(success: success, duration: duration, now: now) }
            state.slots[endpoint] = slot
            let after = slot.breaker.state.name
            return before == after ? nil : (before, after)
        }
        if let change { onChange(endpoint, change.0, change.1) }
    }

    /// Each instance with its breaker state and calls in flight.
    public var snapshot: [(endpoint: Endpoint, breaker: String, outstanding: Int)] {
        state.withLockedValue { state in state.endpoints.map { ($0, state.slots[$0]!.breaker.state.name, state.slots[$0]!.outstanding) } }
    }
}
