import Foundation

/// What a step knows while it runs: which saga, which step, which attempt, and the idempotency key that makes a
/// repeated call (a retry, or a re-run after a crash) have one effect downstream.
public struct SagaStepContext: Sendable {
    public let sagaID: String
    public let step: String
    /// 1 for the first try of this step in this process.
    public let attempt: Int
    /// Stable across retries and restarts: `<saga id>:<step>`.
    public var idempotencyKey: String { "\(sagaID):\(step)" }
}

/// A step failure that retrying will not mend (a declined card, no stock): the saga compensates at once. `status` is
/// the HTTP status a caller should see. Any other error a step throws counts as transient and is retried.
public struct SagaStepFailure: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { "\(status): \(message)" }
}

/// One step of a saga: an action that may change the saga's state (recording ids it made, say), a compensation that
/// undoes it, a timeout per attempt and how many attempts a transient failure gets.
///
/// Both closures must be idempotent under ``SagaStepContext/idempotencyKey``: after a crash the orchestrator cannot
/// know whether an action that was running took effect, so it runs it (or its compensation) again.
public struct SagaStep<State: Codable & Sendable>: Sendable {
    public var name: String
    public var timeout: Duration
    /// Attempts before a transient failure counts as final; by default only the saga's deadline counts.
    public var maxAttempts: Int
    public var action: @Sendable (inout State, SagaStepContext) async throws -> Void
    public var compensation: (@Sendable (State, SagaStepContext) async throws -> Void)?

    public init(
        _ name: String,
        timeout: Duration = .seconds(10),
        maxAttempts: Int = .max,
        action: @escaping @Sendable (inout State, SagaStepContext) async throws -> Void,
        compensation: (@Sendable (State, SagaStepContext) async throws -> Void)? = nil
    ) {
        self.name = name
        self.timeout = timeout
        self.maxAttempts = maxAttempts
        self.action = action
        self.compensation = compensation
    }
}

/// A saga: steps run in order; when one fails, the completed ones (and the failed one, whose effect may be unknown)
/// are compensated in reverse order.
///
/// A transient failure (any error but a ``SagaStepFailure``: a 5xx, an unreachable service, a timeout) is retried with
/// capped exponential backoff: a step's for as long as the saga's ``deadline`` allows (then it compensates), a
/// compensation's until it succeeds or ``compensationLimit`` has passed since the saga started. Only a permanent
/// refusal of a compensation, or that limit, leaves the saga `failed` for an operator.
public struct SagaDefinition<State: Codable & Sendable>: Sendable {
    public var name: String
    public var steps: [SagaStep<State>]
    /// Attempts of a compensation before the saga is left for an operator (`failed`); by default only the limit counts.
    public var compensationAttempts: Int
    /// First retry delay of a step or compensation; it doubles per attempt, with jitter, up to `maxBackoff`.
    public var baseBackoff: Duration
    public var maxBackoff: Duration
    /// How long after its start a saga's steps keep retrying transient failures before it gives up and compensates.
    public var deadline: Duration
    /// How long after its start compensations keep retrying transient failures before the saga is left `failed`.
    public var compensationLimit: Duration

    public init(
        name: String, steps: [SagaStep<State>], compensationAttempts: Int = .max, baseBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(5), deadline: Duration = .seconds(120), compensationLimit: Duration = .seconds(86_400)
    ) {
        self.name = name
        self.steps = steps
        self.compensationAttempts = compensationAttempts
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.deadline = deadline
        self.compensationLimit = compensationLimit
    }

    func backoff(afterAttempt attempt: Int) -> Duration {
        let exponential = baseBackoff * (1 << min(max(attempt - 1, 0), 16))
        let capped = min(exponential, maxBackoff)
        return capped / 2 + (capped / 2) * Double.random(in: 0...1)
    }
}

/// Where a saga is. `failed` means a compensation could not be done: an operator must look.
public enum SagaStatus: String, Codable, Sendable {
    case running, compensating, completed, compensated, failed

    public var isFinished: Bool { self == .completed || self == .compensated || self == .failed }
}

/// A saga as stored: its state, where it is, why it failed, and its history.
public struct SagaRecord<State: Codable & Sendable>: Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var name: String
        /// `started`, `completed`, `failed`, `compensating`, `compensated`, `compensation failed`.
        public var status: String
        public var at: String
        public var error: String?
    }

    public var id: String
    public var status: SagaStatus
    public var state: State
    /// The failure that made the saga compensate, with the HTTP status a caller should see.
    public var error: String?
    public var errorStatus: Int?
    public var history: [Entry]
}
