import ServiceCore
import ServiceResilience

/// How long rows that grow with traffic but are not business data are kept, and how often they are pruned.
///
/// `retention` covers handled events and their deliveries, inbox ids, finished sagas and idempotency records;
/// `deadLetterRetention` (normally longer) covers dead letters that nobody replayed.
public struct RetentionPolicy: Sendable, Equatable {
    public var retention: Duration
    public var deadLetterRetention: Duration

    /// A setting that is not a duration such as `30s`, `12h` or `7d`.
    public struct Invalid: Error, CustomStringConvertible {
        public var setting: String
        public var text: String
        public var description: String { "\(setting) is not a duration: '\(text)' (expected e.g. 30s, 15m, 12h, 7d)" }
    }

    public init(retention: Duration = .seconds(7 * 86_400), deadLetterRetention: Duration = .seconds(30 * 86_400)) {
        self.retention = retention
        self.deadLetterRetention = deadLetterRetention
    }

    /// Parses `RETENTION` and `DEAD_LETTER_RETENTION` as written in `settings`. A dead-letter retention shorter than the
    /// retention is raised to it: a dead letter is never pruned before the events beside it.
    public init(settings: ServiceSettings) throws {
        guard let retention = Duration.parse(settings.retention) else { throw Invalid(setting: "RETENTION", text: settings.retention) }
        guard let dead = Duration.parse(settings.deadLetterRetention) else {
            throw Invalid(setting: "DEAD_LETTER_RETENTION", text: settings.deadLetterRetention)
        }
        self.init(retention: retention, deadLetterRetention: max(dead, retention))
    }

    /// Time between two pruning passes: a quarter of the retention, at least a second and at most a minute, so a short
    /// retention keeps tables small and a long one still prunes in small, frequent batches.
    public var interval: Duration {
        min(max(retention / 4, .seconds(1)), .seconds(60))
    }
}
