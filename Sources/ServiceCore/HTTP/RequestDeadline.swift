import ServiceResilience

/// The time a request's caller is still waiting, carried from service to service so no one works on a request whose
/// caller has given up. On the wire it is `X-Request-Timeout-Ms: <milliseconds left>` (relative, so clocks need not
/// agree, as gRPC's `grpc-timeout`); in a service it is a task-local instant that ``ServiceClient`` reads: each call
/// sends what is left, bounds its own timeout by it, and is not made at all when nothing is left.
public enum RequestDeadline {
    public static let headerName = "x-request-timeout-ms"
    /// The longest budget accepted (a day).
    public static let maximumMilliseconds = 86_400_000

    /// When the current request's caller stops waiting (nil: no deadline, e.g. in an event handler or a saga).
    @TaskLocal public static var current: ContinuousClock.Instant?

    /// Milliseconds in a header value: a whole number from 0 to a day; nil for anything else.
    public static func milliseconds(_ value: String?) -> Int? {
        guard let value, value.utf8.count <= 9, let milliseconds = Int(value), milliseconds >= 0, milliseconds <= maximumMilliseconds else {
            return nil
        }
        return milliseconds
    }

    /// Time left until `deadline`, in whole milliseconds (0 when passed).
    public static func millisecondsLeft(until deadline: ContinuousClock.Instant) -> Int {
        let left = ContinuousClock.now.duration(to: deadline)
        guard left > .zero else { return 0 }
        return Int(left.wholeMilliseconds)
    }

    /// Thrown instead of making a call when the caller's deadline has passed; never retried.
    public struct Exceeded: FinalError, CustomStringConvertible {
        public let service: String
        public var description: String { "the caller's deadline passed before calling \(service)" }

        public init(service: String) {
            self.service = service
        }
    }
}
