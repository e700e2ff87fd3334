import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import ServiceResilience

/// The caches of one process and the backplane they share: makes each ``Cache`` and hands it the invalidations other
/// instances send (ignoring this process's own, which it applied already). A backplane's "anything may have changed"
/// (`cache: "*"`, after a reconnect or a gap) empties every cache.
public final class Caches: Sendable {
    public let backplane: (any CacheBackplane)?
    /// This process, as the origin of its invalidations.
    public let origin = UUID().uuidString.lowercased()
    let logger: Logger
    let clock: any WallClock
    private let handlers = NIOLockedValueBox<[String: @Sendable (CacheInvalidation) -> Void]>([:])

    public init(backplane: (any CacheBackplane)?, clock: any WallClock = SystemClock(), logger: Logger) {
        self.backplane = backplane
        self.clock = clock
        self.logger = logger
        backplane?.subscribe { [handlers, origin] invalidation in
            guard invalidation.origin != origin else { return }
            let targets = handlers.withLockedValue { all in
                invalidation.cache == "*" ? Array(all.values) : all[invalidation.cache].map { [$0] } ?? []
            }
            for handler in targets { handler(invalidation) }
        }
    }

    /// A cache named `name` (unique in the process; other instances' caches of the same name are its peers).
    public func cache<Value: Codable & Sendable>(_ name: String, of type: Value.Type = Value.self, configuration: CacheConfiguration) -> Cache<Value>
    {
        let cache = Cache<Value>(name: name, configuration: configuration, backplane: backplane, origin: origin, clock: clock, logger: logger)
        handlers.withLockedValue { handlers in
            precondition(handlers[name] == nil, "a cache named \(name) exists already in this process")
            handlers[name] = { [weak cache] invalidation in cache?.apply(invalidation, remote: true) }
        }
        return cache
    }
}
