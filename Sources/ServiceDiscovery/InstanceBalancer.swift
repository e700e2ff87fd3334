import ServiceCore
import ServiceResilience
import Synchronization

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
        var endpoint: Endpoint
        var outstanding = 0
        var breaker: CircuitBreakerMachine<ContinuousClock.Instant>
    }

    struct State {
        /// In the order given; a handful of instances, so a linear scan beats hashing.
        var slots: [Slot] = []
        var next = 0

        func index(of endpoint: Endpoint) -> Int? { slots.firstIndex { $0.endpoint == endpoint } }
    }

    public let name: String
    public let strategy: Strategy
    /// At most this many calls in flight per instance (a bulkhead per instance); an instance at the bound is passed over.
    public let maxOutstanding: Int
    let breaker: CircuitBreakerConfiguration
    /// A `Mutex` (it spins briefly before sleeping): the gateway's event loops take it twice per request.
    let state = Mutex(State())
    let onChange: @Sendable (_ endpoint: Endpoint, _ from: String, _ to: String) -> Void

    /// The default per-instance breaker: 5 failures in a row (or half of at least 20 calls in 30 s) eject the instance
    /// for 5 s, then one trial call decides.
    public static var defaultBreaker: CircuitBreakerConfiguration { .init(consecutiveFailures: 5, openDuration: .seconds(5), halfOpenCalls: 1) }

    public init(
        name: String, endpoints: [Endpoint] = [], strategy: Strategy = .leastOutstanding, maxOutstanding: Int = .max,
        breaker: CircuitBreakerConfiguration = InstanceBalancer.defaultBreaker,
        onChange: @escaping @Sendable (_ endpoint: Endpoint, _ from: String, _ to: String) -> Void = { _, _, _ in }
    ) {
        self.name = name
        self.strategy = strategy
        self.maxOutstanding = maxOutstanding
        self.breaker = breaker
        self.onChange = onChange
        update(endpoints)
    }

    /// Replaces the instance list (duplicates dropped); instances still listed keep their breaker and in-flight count.
    public func update(_ endpoints: [Endpoint]) {
        let configuration = breaker
        state.withLock { state in
            guard state.slots.count != endpoints.count || !zip(state.slots, endpoints).allSatisfy({ $0.endpoint == $1 }) else { return }
            var seen = Set<Endpoint>()
            state.slots = endpoints.filter { seen.insert($0).inserted }.map { endpoint in
                state.index(of: endpoint).map { state.slots[$0] }
                    ?? Slot(endpoint: endpoint, breaker: CircuitBreakerMachine(configuration: configuration))
            }
        }
    }

    public var endpoints: [Endpoint] { state.withLock { $0.slots.map(\.endpoint) } }

    /// An instance to call now, counted as in flight until ``finished(_:success:duration:)``; nil when there is none, or
    /// every instance's breaker is open or its calls in flight at the bound. `excluding` are instances this call already failed to reach. Allocates nothing.
    public func pick(excluding: Set<Endpoint> = []) -> Endpoint? {
        let now = ContinuousClock.now
        var changed: (Endpoint, String, String)?
        let chosen = state.withLock { state -> Endpoint? in
            let count = state.slots.count
            guard count > 0 else { return nil }
            let start = state.next % count
            state.next = (start + 1) % count
            // In turn from `start`, the admissible instance with the fewest calls in flight (or the first, round-robin).
            var best: Int?
            for offset in 0..<count {
                let index = (start + offset) % count
                guard excluding.isEmpty || !excluding.contains(state.slots[index].endpoint), state.slots[index].outstanding < maxOutstanding,
                    state.slots[index].breaker.admits(now: now)
                else { continue }
                if strategy == .roundRobin {
                    best = index
                    break
                }
                if best == nil || state.slots[index].outstanding < state.slots[best!].outstanding { best = index }
            }
            guard let index = best else { return nil }
            let before = state.slots[index].breaker.state.name
            guard state.slots[index].breaker.acquire(now: now) == .allow else { return nil }
            state.slots[index].outstanding += 1
            let after = state.slots[index].breaker.state.name
            if before != after { changed = (state.slots[index].endpoint, before, after) }
            return state.slots[index].endpoint
        }
        if let changed { onChange(changed.0, changed.1, changed.2) }
        return chosen
    }

    /// The call to `endpoint` ended: `success` counts for its breaker; nil (the caller gave up) counts for nothing.
    public func finished(_ endpoint: Endpoint, success: Bool?, duration: Duration = .zero) {
        let now = ContinuousClock.now
        let change = state.withLock { state -> (String, String)? in
            guard let index = state.index(of: endpoint) else { return nil }
            state.slots[index].outstanding = max(0, state.slots[index].outstanding - 1)
            guard let success else {
                state.slots[index].breaker.release()
                return nil
            }
            let before = state.slots[index].breaker.state.name
            state.slots[index].breaker.record(success: success, duration: duration, now: now)
            let after = state.slots[index].breaker.state.name
            return before == after ? nil : (before, after)
        }
        if let change { onChange(endpoint, change.0, change.1) }
    }

    /// Each instance with its breaker state and calls in flight.
    public var snapshot: [(endpoint: Endpoint, breaker: String, outstanding: Int)] {
        state.withLock { state in state.slots.map { ($0.endpoint, $0.breaker.state.name, $0.outstanding) } }
    }
}
