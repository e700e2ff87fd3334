import NIOConcurrencyHelpers

/// Settings of a circuit breaker.
public struct CircuitBreakerConfiguration: Sendable {
    /// Trips after this many failures in a row.
    public var consecutiveFailures: Int
    /// Trips when at least this share of the calls in the window failed…
    public var failureRate: Double
    /// …and the window holds at least this many calls.
    public var minimumCalls: Int
    /// The sliding window the failure rate is measured over (kept as ten buckets).
    public var window: Duration
    /// A call slower than this counts as a failure (nil: duration does not matter).
    public var slowCall: Duration?
    /// How long the breaker stays open before letting trial calls through.
    public var openDuration: Duration
    /// Trial calls let through while half-open; when all of them succeed the breaker closes, one failure reopens it.
    public var halfOpenCalls: Int

    public init(
        consecutiveFailures: Int = 5, failureRate: Double = 0.5, minimumCalls: Int = 20, window: Duration = .seconds(30),
        slowCall: Duration? = nil, openDuration: Duration = .seconds(10), halfOpenCalls: Int = 3
    ) {
        self.consecutiveFailures = consecutiveFailures
        self.failureRate = failureRate
        self.minimumCalls = minimumCalls
        self.window = window
        self.slowCall = slowCall
        self.openDuration = openDuration
        self.halfOpenCalls = halfOpenCalls
    }
}

/// The circuit breaker's state machine, pure: every transition takes the current instant, so it is tested without
/// sleeping (with any `InstantProtocol`, e.g. a manual clock's).
public struct CircuitBreakerMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public enum State: Equatable, Sendable {
        case closed
        case open(until: Instant)
        case halfOpen(admitted: Int, succeeded: Int)

        public var name: String {
            switch self {
            case .closed: "closed"
            case .open: "open"
            case .halfOpen: "half-open"
            }
        }
    }

    /// What a caller may do now.
    public enum Decision: Equatable, Sendable {
        case allow
        /// Refused: the breaker is open (or half-open with its trial calls taken).
        case reject
    }

    /// One tenth of the window: the calls and failures of time slot `slot` (counted from the first call).
    struct Bucket: Sendable {
        var slot: Int64 = .min
        var calls = 0
        var failures = 0
    }

    public let configuration: CircuitBreakerConfiguration
    public private(set) var state: State = .closed
    private var consecutive = 0
    /// A ring of ten buckets, allocated once: recording a call allocates nothing.
    private var buckets = [Bucket](repeating: Bucket(), count: 10)
    private var epoch: Instant?
    private let slotNanoseconds: Int64

    public init(configuration: CircuitBreakerConfiguration) {
        self.configuration = configuration
        self.slotNanoseconds = max(1, configuration.window.wholeNanoseconds / 10)
    }

    /// The slot `now` falls in.
    func slot(_ now: Instant) -> Int64 {
        guard let epoch else { return 0 }
        return epoch.duration(to: now).wholeNanoseconds / slotNanoseconds
    }

    /// Asks to make a call at `now`. An open breaker whose time is up turns half-open and admits trial calls.
    public mutating func acquire(now: Instant) -> Decision {
        switch state {
        case .closed:
            return .allow
        case .open(let until):
            guard now >= until else { return .reject }
            state = .halfOpen(admitted: 1, succeeded: 0)
            return .allow
        case .halfOpen(let admitted, let succeeded):
            guard admitted < configuration.halfOpenCalls else { return .reject }
            state = .halfOpen(admitted: admitted + 1, succeeded: succeeded)
            return .allow
        }
    }

    /// Whether ``acquire(now:)`` would allow a call at `now` (without taking a half-open trial).
    public func admits(now: Instant) -> Bool {
        switch state {
        case .closed: true
        case .open(let until): now >= until
        case .halfOpen(let admitted, _): admitted < configuration.halfOpenCalls
        }
    }

    /// An allowed call ended with no verdict on the dependency (the caller gave up, or its own deadline passed): a
    /// half-open trial slot it held is given back, so the breaker is not left waiting for an outcome that never comes.
    public mutating func release() {
        if case .halfOpen(let admitted, let succeeded) = state, admitted > succeeded {
            state = .halfOpen(admitted: admitted - 1, succeeded: succeeded)
        }
    }

    /// Records the outcome of an allowed call that took `duration`, ending at `now`.
    public mutating func record(success: Bool, duration: Duration, now: Instant) {
        let failed = !success || (configuration.slowCall.map { duration > $0 } ?? false)
        switch state {
        case .open:
            // A call admitted before the breaker opened: its outcome no longer matters.
            return
        case .halfOpen(let admitted, let succeeded):
            if failed {
                trip(now: now)
            } else if succeeded + 1 >= configuration.halfOpenCalls {
                close()
            } else {
                state = .halfOpen(admitted: admitted, succeeded: succeeded + 1)
            }
        case .closed:
            consecutive = failed ? consecutive + 1 : 0
            if epoch == nil { epoch = now }
            let current = slot(now)
            add(failed: failed, slot: current)
            let (calls, failures) = totals(slot: current)
            if consecutive >= configuration.consecutiveFailures
                || (calls >= configuration.minimumCalls && Double(failures) >= configuration.failureRate * Double(calls))
            {
                trip(now: now)
            }
        }
    }

    /// Calls and failures in the window ending at `now` (the ten slots up to and including `now`'s).
    public func totals(now: Instant) -> (calls: Int, failures: Int) {
        totals(slot: slot(now))
    }

    func totals(slot current: Int64) -> (calls: Int, failures: Int) {
        var calls = 0
        var failures = 0
        for bucket in buckets where bucket.slot <= current && bucket.slot > current - 10 {
            calls += bucket.calls
            failures += bucket.failures
        }
        return (calls, failures)
    }

    mutating func add(failed: Bool, slot current: Int64) {
        let index = Int(((current % 10) + 10) % 10)
        if buckets[index].slot != current { buckets[index] = Bucket(slot: current) }
        buckets[index].calls += 1
        if failed { buckets[index].failures += 1 }
    }

    mutating func clearWindow() {
        for index in buckets.indices { buckets[index] = Bucket() }
        epoch = nil
    }

    mutating func trip(now: Instant) {
        state = .open(until: now.advanced(by: configuration.openDuration))
        consecutive = 0
        clearWindow()
    }

    mutating func close() {
        state = .closed
        consecutive = 0
        clearWindow()
    }
}

/// A thread-safe circuit breaker on a clock: wraps calls, refuses them at once while open, and reports state changes.
public final class CircuitBreaker<C: Clock>: Sendable where C.Duration == Duration {
    /// Thrown instead of calling while the breaker is open.
    public struct Open: FinalError, CustomStringConvertible {
        public let name: String
        public var description: String { "circuit '\(name)' is open" }
        public init(name: String) { self.name = name }
    }

    public let name: String
    let clock: C
    let machine: NIOLockedValueBox<CircuitBreakerMachine<C.Instant>>
    let onChange: @Sendable (_ name: String, _ from: String, _ to: String) -> Void

    public init(
        name: String, configuration: CircuitBreakerConfiguration = .init(), clock: C,
        onChange: @escaping @Sendable (_ name: String, _ from: String, _ to: String) -> Void = { _, _, _ in }
    ) {
        self.name = name
        self.clock = clock
        self.machine = NIOLockedValueBox(CircuitBreakerMachine(configuration: configuration))
        self.onChange = onChange
    }

    /// The state's name: `closed`, `open` or `half-open`.
    public var state: String { machine.withLockedValue { $0.state.name } }

    /// Runs `operation` unless the breaker is open; its error (or slowness) counts against the breaker.
    public func run<T: Sendable>(_ operation: @Sendable () async throws -> T) async throws -> T {
        let start = clock.now
        guard transition({ $0.acquire(now: start) == .allow }) else { throw Open(name: name) }
        do {
            let value = try await operation()
            let now = clock.now
            _ = transition { machine in
                machine.record(success: true, duration: start.duration(to: now), now: now)
                return true
            }
            return value
        } catch let final as any FinalError {
            // An open breaker further in, or the caller's deadline: nothing learnt about this dependency.
            _ = transition { machine in
                machine.release()
                return true
            }
            throw final
        } catch is CancellationError {
            _ = transition { machine in
                machine.release()
                return true
            }
            throw CancellationError()
        } catch {
            let now = clock.now
            _ = transition { machine in
                machine.record(success: false, duration: start.duration(to: now), now: now)
                return true
            }
            throw error
        }
    }

    /// Applies `change`, reporting a change of state.
    func transition(_ change: (inout CircuitBreakerMachine<C.Instant>) -> Bool) -> Bool {
        let (result, from, to) = machine.withLockedValue { machine -> (Bool, String, String) in
            let before = machine.state.name
            let result = change(&machine)
            return (result, before, machine.state.name)
        }
        if from != to { onChange(name, from, to) }
        return result
    }
}
