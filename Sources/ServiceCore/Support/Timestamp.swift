import Foundation
import ServiceResilience

/// ISO 8601 UTC timestamps with milliseconds, fixed width so they sort as text in either database.
public enum Timestamp {
    /// Now, as `2026-11-25T09:14:47.123Z`.
    public static func now() -> String { format(.now) }

    /// The time of `clock`, as `2026-11-25T09:14:47.123Z`.
    public static func now(on clock: any WallClock) -> String { format(clock.date) }

    /// `date` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

extension WallClock {
    /// The clock's time as a `Date`.
    public var date: Date { Date(timeIntervalSince1970: sinceEpoch.inSeconds) }
}
