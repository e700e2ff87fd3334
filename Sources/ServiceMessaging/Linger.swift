/// Spaces a loop's passes at least `interval` apart while it is under load (the "linger" of batching producers): when
/// the previous pass found more than one item — items arrive faster than passes — and began less than `interval` ago,
/// the next waits out the rest, so each pass takes a bigger batch instead of many passes taking one item each. A pass
/// that found one item or none lingers not at all, so at a moderate rate a lone event pays no delay.
struct Linger {
    let interval: Duration
    private var lastBusyStart: ContinuousClock.Instant?

    init(_ interval: Duration) {
        self.interval = interval
    }

    /// Call before a pass; answers how long to pause first.
    mutating func beforePass() -> Duration {
        guard let last = lastBusyStart else { return .zero }
        let elapsed = ContinuousClock.now - last
        return elapsed < interval ? interval - elapsed : .zero
    }

    /// Call after a pass that began at `start`, with how many items it found.
    mutating func passBegan(at start: ContinuousClock.Instant, found items: Int) {
        lastBusyStart = items > 1 && interval > .zero ? start : nil
    }
}

/// Paces a loop's occasional side work (sampling a queue's depth for metrics) to at most once per `interval`: due on
/// the first pass, then once the interval has passed since the last time it ran.
struct Pacer {
    let interval: Duration
    private var last: ContinuousClock.Instant?

    init(every interval: Duration) {
        self.interval = interval
    }

    /// True when the work is due (and counts it as done now).
    mutating func isDue() -> Bool {
        let now = ContinuousClock.now
        if let last, last.duration(to: now) < interval { return false }
        last = now
        return true
    }
}
