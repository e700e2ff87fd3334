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
        var dirty = false
        var task: Task<Value?, any Error>?

        init(tags: [String]) {
            self.tags = tags
        }
    }

    private struct State: Sendable {
        var store: LRUStore<Value?>
        var flights: [String: Flight] = [:]
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
    /// tags the value is filed under when it is loaded.
    public func get(_ key: String, tags: [String] = [], load: @escaping @Sendable () async throws -> Value?) async throws -> Value? {
        guard configuration.enabled else { return try await load() }
        // Not hearing invalidations: what is held here may be out of date.
        if let backplane, !backplane.isListening {
            counters.record(.bypass)
            return try await load()
        }
        let now = clock.sinceEpoch
        let step = state.withLockedValue { state -> CacheStep<Value> in
            if let entry = state.store.get(key) {
                if now < entry.freshUntil { return .hit(entry.value) }
                if now < entry.staleUntil {
                    if state.flights[key] == nil { state.flights[key] = start(key, tags: tags, load: load) }
                    return .stale(entry.value)
                }
                state.store.remove(key)
            }
            if let flight = state.flights[key], let task = flight.task { return .wait(task) }
            let flight = start(key, tags: tags, load: load)
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
            return try await task.value
        }
    }

    /// Forgets `keys` and every entry filed under one of `tags`, in this process at once, then in the shared level and
    /// every other instance (a failure there is logged and counted; the other instances then hold their copies until
    /// their time to live or the backplane's reconnect).
    public func invalidate(keys: [String] = [], tags: [String] = []) async {
        guard !keys.isEmpty || !tags.isEmpty else { return }
        let invalidation = CacheInvalidation(cache: name, keys: keys, tags: tags, origin: origin)
        apply(invalidation, remote: false)
        guard let backplane else { return }
        do {
            try await backplane.invalidate(invalidation)
        } catch {
            counters.sharedErrors.increment()
            logger.warning("Could not tell other instances of an invalidation", metadata: ["cache": "\(name)", "error": "\(error)"])
        }
    }

    /// Applies an invalidation (this process's own, or another instance's through the backplane).
    func apply(_ invalidation: CacheInvalidation, remote: Bool) {
        let removed = state.withLockedValue { state -> Int in
            var removed = 0
            if invalidation.all {
                removed += state.store.removeAll()
                for flight in state.flights.values { flight.dirty = true }
            }
            for key in invalidation.keys {
                if state.store.remove(key) { removed += 1 }
                state.flights[key]?.dirty = true
            }
            for tag in invalidation.tags {
                removed += state.store.remove(tag: tag)
                for flight in state.flights.values where flight.tags.contains(tag) { flight.dirty = true }
            }
            return removed
        }
        counters.invalidated(remote: remote, entries: removed)
    }

    /// What has been counted since the start.
    public var statistics: CacheStatistics { counters.snapshot }

    /// Entries and bytes held in this process now.
    public var size: (entries: Int, bytes: Int) { state.withLockedValue { ($0.store.count, $0.store.bytes) } }

    // MARK: Loading

    /// Starts the one load of `key` (called under the lock; the task begins after it is released).
    private func start(_ key: String, tags: [String], load: @escaping @Sendable () async throws -> Value?) -> Flight {
        let flight = Flight(tags: tags)
        flight.task = Task { [self] in
            try await fill(key, flight: flight, load: load)
        }
        return flight
    }

    private func fill(_ key: String, flight: Flight, load: @escaping @Sendable () async throws -> Value?) async throws -> Value? {
        if let backplane, backplane.hasSharedLevel {
            do {
                if let bytes = try await backplane.read(cache: name, key: key) {
                    let value = try JSONDecoder().decode(Value?.self, from: Data(bytes.readableBytesView))
                    counters.record(.sharedHit)
                    keep(key, value, bytes: bytes.readableBytes, tags: flight.tags, flight: flight)
                    return value
                }
            } catch {
                counters.sharedErrors.increment()
                logger.debug("Shared cache level failed; loading from the source", metadata: ["cache": "\(name)", "error": "\(error)"])
            }
        }
        counters.record(.miss)
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
        let kept = keep(key, value, bytes: encoded?.count ?? 0, tags: flight.tags, flight: flight)
        if kept, let encoded, let backplane, backplane.hasSharedLevel {
            let lifetime = value == nil ? configuration.negativeTimeToLive : configuration.timeToLive + configuration.staleWhileRevalidate
            do {
                try await backplane.write(cache: name, key: key, bytes: ByteBuffer(bytes: encoded), tags: flight.tags, timeToLive: lifetime)
            } catch {
                counters.sharedErrors.increment()
                logger.debug("Could not write to the shared cache level", metadata: ["cache": "\(name)", "error": "\(error)"])
            }
        }
        return value
    }

    /// Keeps a loaded value unless an invalidation overtook its load or it is a "not found" not to remember; ends the
    /// flight either way. Answers whether it was kept.
    @discardableResult
    private func keep(_ key: String, _ value: Value?, bytes: Int, tags: [String], flight: Flight) -> Bool {
        let now = clock.sinceEpoch
        let lifetime = value == nil ? configuration.negativeTimeToLive : configuration.timeToLive
        let evicted = state.withLockedValue { state -> Int? in
            if state.flights[key] === flight { state.flights[key] = nil }
            guard !flight.dirty, lifetime > .zero else { return nil }
            let staleUntil = value == nil ? now + lifetime : now + lifetime + configuration.staleWhileRevalidate
            let entry = LRUStore<Value?>.Entry(
                value: value, bytes: bytes + key.utf8.count + 64, freshUntil: now + lifetime, staleUntil: staleUntil, tags: tags)
            return state.store.set(key, entry)
        }
        if let evicted, evicted > 0 { counters.evicted(evicted) }
        return evicted != nil
    }
}

/// What a read does, decided under the lock.
enum CacheStep<Value: Sendable> {
    case hit(Value?)
    case stale(Value?)
    case wait(Task<Value?, any Error>)
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
        return answered + misses == 0 ? 0 : Double(answered) / Double(answered + misses)
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

    func invalidated(remote: Bool, entries: Int) { (remote ? remoteInvalidations : localInvalidations).increment() }

    var snapshot: CacheStatistics {
        CacheStatistics(
            hits: hits.current, sharedHits: sharedHits.current, staleHits: staleHits.current, misses: misses.current, bypassed: bypassed.current,
            loads: loads.current,
            loadFailures: loadFailures.current, evictions: evictions.current,
            invalidations: localInvalidations.current + remoteInvalidations.current, sharedErrors: sharedErrors.current)
    }
}
