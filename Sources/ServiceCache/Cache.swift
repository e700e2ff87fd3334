import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import ServiceResilience
import Synchronization

/// The guide's two-level `CacheManager`, for values of one kind: an in-process level (LRU, bounded by entries and
/// bytes, with a time to live) in front of the process's ``CacheBackplane`` (Redis as the shared second level, or none),
/// in front of the source.
///
/// - A miss loads once per key per process at a time (single flight): concurrent readers of the key wait for that one
///   load.
/// - "Not found" (a load answering nil) is remembered for ``CacheConfiguration/negativeTimeToLive``; an expired value
///   is served for ``CacheConfiguration/staleWhileRevalidate`` while one load refreshes it.
/// - ``invalidate(keys:tags:)`` forgets keys and every key carrying a tag (found through an index, never `KEYS`), here
///   and, through the backplane, in every other instance and in the shared level. A load that was running when its key
///   was invalidated answers its callers but is not kept (it may have read the old value).
/// - A failing shared level is skipped (the source answers); it never fails a read. While the backplane hears no
///   invalidations (Redis down), every read goes to the source: a copy held here may have been invalidated meanwhile.
/// - Counted per cache: `cache_requests_total{cache,result=hit|shared_hit|stale|miss|bypass}`, `cache_loads_total{cache,
///   outcome}`, `cache_evictions_total`, `cache_invalidations_total{cache,origin=local|remote}`,
///   `cache_shared_errors_total`; the same counts in ``statistics``.
public final class Cache<Value: Codable & Sendable>: Sendable {
    public let name: String
    public let configuration: CacheConfiguration
    let clock: any WallClock
    let backplane: (any CacheBackplane)?
    let origin: String
    let logger: Logger
    let counters: Counters
    private let state: NIOLockedValueBox<State>

    /// A load in flight, and whether an invalidation made its result unfit to keep (guarded by the state's lock).
    private final class Flight: @unchecked Sendable {
        let tags: [String]
        var dirty: Bool
        /// Whether it may read and write the shared level (not while an invalidation of this process is pending, and
        /// not for a stale-while-revalidate refresh, which would read the same stale copy back).
        let useShared: Bool
        var task: Task<Loaded, any Error>?

        init(tags: [String], dirty: Bool, useShared: Bool) {
            self.tags = tags
            self.dirty = dirty
            self.useShared = useShared
        }
    }

    /// What a load found, and where.
    struct Loaded: Sendable {
        var value: Value?
        var fromShared: Bool
    }

    private struct State: Sendable {
        var store: LRUStore<Value?>
        var flights: [String: Flight] = [:]
        /// This process's invalidations the backplane has not taken yet (retried until it does).
        var pending: [CacheInvalidation] = []
        var retrying = false
    }

    public init(
        name: String, configuration: CacheConfiguration = .init(), backplane: (any CacheBackplane)? = nil, origin: String = UUID().uuidString,
        clock: any WallClock = SystemClock(), logger: Logger
    ) {
        self.name = name
        self.configuration = configuration
        self.backplane = backplane
        self.origin = origin
        self.clock = clock
        self.logger = logger
        self.counters = Counters(cache: name)
        self.state = NIOLockedValueBox(State(store: LRUStore(maxEntries: configuration.maxEntries, maxBytes: configuration.maxBytes)))
    }

    /// The value of `key`: from this process, the shared level, or `load` (nil: the source has none). `tags` are the
    /// tags the value is filed under when it is loaded ("not found" is filed under none).
    public func get(_ key: String, tags: [String] = [], load: @escaping @Sendable () async throws -> Value?) async throws -> Value? {
        guard configuration.enabled else { return try await load() }
        // Not hearing invalidations: what is held here may be out of date, so nothing held is answered and nothing
        // loaded is kept (concurrent readers of a key still share one load).
        let listening = backplane?.isListening ?? true
        let useShared = backplane?.hasSharedLevel == true && configuration.sharedLevel
        let now = clock.sinceEpoch
        let step = state.withLockedValue { state -> CacheStep<Value, Loaded> in
            if listening, let entry = state.store.get(key) {
                if now < entry.freshUntil { return .hit(entry.value) }
                if now < entry.staleUntil {
                    if state.flights[key] == nil {
                        state.flights[key] = start(key, flight: Flight(tags: tags, dirty: false, useShared: false), load: load)
                    }
                    return .stale(entry.value)
                }
                state.store.remove(key)
            }
            if let flight = state.flights[key], let task = flight.task { return .wait(task) }
            let flight = start(
                key, flight: Flight(tags: tags, dirty: !listening, useShared: useShared && listening && state.pending.isEmpty), load: load)
            state.flights[key] = flight
            return .wait(flight.task!)
        }
        switch step {
        case .hit(let value):
            counters.record(.hit)
            return value
        case .stale(let value):
            counters.record(.stale)
            return value
        case .wait(let task):
            let loaded = try await task.value
            counters.record(!listening ? .bypass : loaded.fromShared ? .sharedHit : .miss)
            return loaded.value
        }
    }

    /// Forgets `keys` and every entry filed under one of `tags`, in this process at once, then in the shared level and
    /// every other instance. When the backplane fails, the invalidation is retried (with backoff) until it takes it,
    /// and meanwhile this process neither reads nor writes the shared level; the other instances, which cannot hear
    /// anything either while it is down, read from the source.
    public func invalidate(keys: [String] = [], tags: [String] = []) async {
        guard !keys.isEmpty || !tags.isEmpty else { return }
        let invalidation = CacheInvalidation(cache: name, keys: keys, tags: tags, origin: origin)
        apply(invalidation, remote: false)
        guard let backplane else { return }
        do {
            try await backplane.invalidate(invalidation)
            // A read between the first apply and the shared level's delete may have brought the old value back.
            apply(invalidation, remote: false, count: false)
        } catch {
            counters.sharedErrors.increment()
            logger.warning(
                "Could not tell other instances of an invalidation; retrying", metadata: ["cache": "\(name)", "error": "\(error)"])
            let startRetrying = state.withLockedValue { state -> Bool in
                state.pending.append(invalidation)
                defer { state.retrying = true }
                return !state.retrying
            }
            if startRetrying { Task { await retryPending(through: backplane) } }
        }
    }

    /// Sends the pending invalidations (merged into one) until the backplane takes them.
    private func retryPending(through backplane: any CacheBackplane) async {
        var delay = Duration.milliseconds(100)
        while true {
            let pending = state.withLockedValue { $0.pending }
            guard !pending.isEmpty else {
                let done = state.withLockedValue { state -> Bool in
                    if state.pending.isEmpty { state.retrying = false }
                    return !state.retrying
                }
                if done { return } else { continue }
            }
            let merged = CacheInvalidation(
                cache: name, keys: Array(Set(pending.flatMap(\.keys))), tags: Array(Set(pending.flatMap(\.tags))),
                all: pending.contains(where: \.all),
                origin: origin)
            do {
                try await backplane.invalidate(merged)
                state.withLockedValue { $0.pending.removeFirst(pending.count) }
                apply(merged, remote: false, count: false)
                logger.notice("Invalidations told to other instances after a failure", metadata: ["cache": "\(name)"])
                delay = .milliseconds(100)
            } catch {
                try? await clock.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// Applies an invalidation (this process's own, or another instance's through the backplane).
    func apply(_ invalidation: CacheInvalidation, remote: Bool, count: Bool = true) {
        state.withLockedValue { state in
            if invalidation.all {
                _ = state.store.removeAll()
                for flight in state.flights.values { flight.dirty = true }
            }
            for key in invalidation.keys {
                state.store.remove(key)
                state.flights[key]?.dirty = true
            }
            for tag in invalidation.tags {
                _ = state.store.remove(tag: tag)
                for flight in state.flights.values where flight.tags.contains(tag) { flight.dirty = true }
            }
        }
        if count { counters.invalidated(remote: remote) }
    }

    /// What has been counted since the start.
    public var statistics: CacheStatistics { counters.snapshot }

    /// Entries and bytes held in this process now.
    public var size: (entries: Int, bytes: Int) { state.withLockedValue { ($0.store.count, $0.store.bytes) } }

    /// Whether invalidations of this process are waiting for the backplane.
    public var hasPendingInvalidations: Bool { state.withLockedValue { !$0.pending.isEmpty } }

    // MARK: Loading

    /// Starts the load of `flight` (called under the lock; the task begins after it is released).
    private func start(_ key: String, flight: Flight, load: @escaping @Sendable () async throws -> Value?) -> Flight {
        flight.task = Task { [self] in
            try await fill(key, flight: flight, load: load)
        }
        return flight
    }

    private func fill(_ key: String, flight: Flight, load: @escaping @Sendable () async throws -> Value?) async throws -> Loaded {
        if flight.useShared, let backplane {
            do {
                if let found = try await backplane.read(cache: name, key: key) {
                    let value = try JSONDecoder().decode(Value?.self, from: Data(found.bytes.readableBytesView))
                    // Kept here only for what is left of its life in the shared level.
                    keep(key, value, bytes: found.bytes.readableBytes, flight: flight, remaining: found.timeToLive)
                    return Loaded(value: value, fromShared: true)
                }
            } catch {
                counters.sharedErrors.increment()
                logger.debug("Shared cache level failed; loading from the source", metadata: ["cache": "\(name)", "error": "\(error)"])
            }
        }
        let value: Value?
        do {
            value = try await load()
            counters.loads.increment()
        } catch {
            counters.loadFailures.increment()
            state.withLockedValue { state in
                if state.flights[key] === flight { state.flights[key] = nil }
            }
            throw error
        }
        let encoded = try? JSONEncoder().encode(value)
        let kept = keep(key, value, bytes: encoded?.count ?? 0, flight: flight, remaining: nil)
        if kept, flight.useShared, let encoded, let backplane {
            let lifetime = value == nil ? configuration.negativeTimeToLive : configuration.timeToLive + configuration.staleWhileRevalidate
            do {
                try await backplane.write(
                    cache: name, key: key, bytes: ByteBuffer(bytes: encoded), tags: value == nil ? [] : flight.tags, timeToLive: lifetime)
            } catch {
                counters.sharedErrors.increment()
                logger.debug("Could not write to the shared cache level", metadata: ["cache": "\(name)", "error": "\(error)"])
            }
        }
        return Loaded(value: value, fromShared: false)
    }

    /// Keeps a loaded value unless an invalidation overtook its load or it is a "not found" not to remember; ends the
    /// flight either way. `remaining`: what is left of its life in the shared level, when it came from there. Answers
    /// whether it was kept (or refused only for its size).
    @discardableResult
    private func keep(_ key: String, _ value: Value?, bytes: Int, flight: Flight, remaining: Duration?) -> Bool {
        let now = clock.sinceEpoch
        let fresh = value == nil ? configuration.negativeTimeToLive : configuration.timeToLive
        let stale = value == nil ? Duration.zero : configuration.staleWhileRevalidate
        let life: (fresh: Duration, total: Duration) =
            remaining.map { (fresh: min(fresh, max(.zero, $0 - stale)), total: min(fresh + stale, $0)) } ?? (fresh, fresh + stale)
        let evicted = state.withLockedValue { state -> Int? in
            if state.flights[key] === flight { state.flights[key] = nil }
            guard !flight.dirty, life.total > .zero, fresh > .zero else { return nil }
            let entry = LRUStore<Value?>.Entry(
                value: value, bytes: bytes + key.utf8.count + 64, freshUntil: now + life.fresh, staleUntil: now + life.total,
                tags: value == nil ? [] : flight.tags)
            return state.store.set(key, entry)
        }
        if let evicted, evicted > 0 { counters.evicted(evicted) }
        return evicted != nil
    }
}

/// What a read does, decided under the lock.
enum CacheStep<Value: Sendable, Loaded: Sendable> {
    case hit(Value?)
    case stale(Value?)
    case wait(Task<Loaded, any Error>)
}

/// A cache's counts since its start.
public struct CacheStatistics: Sendable, Equatable {
    public var hits: Int
    public var sharedHits: Int
    public var staleHits: Int
    public var misses: Int
    /// Reads sent to the source because invalidations could not be heard.
    public var bypassed: Int
    public var loads: Int
    public var loadFailures: Int
    public var evictions: Int
    public var invalidations: Int
    public var sharedErrors: Int

    /// Reads answered without the source, of all reads.
    public var hitRatio: Double {
        let answered = hits + sharedHits + staleHits
        let all = answered + misses + bypassed
        return all == 0 ? 0 : Double(answered) / Double(all)
    }
}

/// A cache's counters: for `/metrics`, and as plain numbers for ``Cache/statistics``.
struct Counters: Sendable {
    enum Result: String {
        case hit, sharedHit = "shared_hit", stale, miss, bypass
    }

    /// One counted number, both as a metric and readable.
    final class Count: Sendable {
        let metric: Counter
        let value = Atomic<Int>(0)

        init(_ label: String, _ dimensions: [(String, String)]) {
            metric = Counter(label: label, dimensions: dimensions)
        }

        func increment(by amount: Int = 1) {
            value.add(amount, ordering: .relaxed)
            metric.increment(by: Int64(amount))
        }

        var current: Int { value.load(ordering: .relaxed) }
    }

    let hits, sharedHits, staleHits, misses, bypassed, loads, loadFailures, evictions, localInvalidations, remoteInvalidations, sharedErrors: Count

    init(cache: String) {
        func request(_ result: Result) -> Count { Count("cache_requests_total", [("cache", cache), ("result", result.rawValue)]) }
        hits = request(.hit)
        sharedHits = request(.sharedHit)
        staleHits = request(.stale)
        misses = request(.miss)
        bypassed = request(.bypass)
        loads = Count("cache_loads_total", [("cache", cache), ("outcome", "success")])
        loadFailures = Count("cache_loads_total", [("cache", cache), ("outcome", "failure")])
        evictions = Count("cache_evictions_total", [("cache", cache)])
        localInvalidations = Count("cache_invalidations_total", [("cache", cache), ("origin", "local")])
        remoteInvalidations = Count("cache_invalidations_total", [("cache", cache), ("origin", "remote")])
        sharedErrors = Count("cache_shared_errors_total", [("cache", cache)])
    }

    func record(_ result: Result) {
        switch result {
        case .hit: hits.increment()
        case .sharedHit: sharedHits.increment()
        case .stale: staleHits.increment()
        case .miss: misses.increment()
        case .bypass: bypassed.increment()
        }
    }

    func evicted(_ count: Int) { evictions.increment(by: count) }

    func invalidated(remote: Bool) { (remote ? remoteInvalidations : localInvalidations).increment() }

    var snapshot: CacheStatistics {
        CacheStatistics(
            hits: hits.current, sharedHits: sharedHits.current, staleHits: staleHits.current, misses: misses.current, bypassed: bypassed.current,
            loads: loads.current,
            loadFailures: loadFailures.current, evictions: evictions.current,
            invalidations: localInvalidations.current + remoteInvalidations.current, sharedErrors: sharedErrors.current)
    }
}
