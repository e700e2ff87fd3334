import NIOConcurrencyHelpers
import ServiceResilience

/// Failed logins counted per account and per client address: once either has used its budget, further attempts are
/// refused (429) until the window ends, whether the password is right or not, so guessing gains nothing. Successful
/// logins count nothing. Per process; each auth instance counts its own.
final class LoginThrottle: Sendable {
    let perAccount: RateLimit
    let perAddress: RateLimit
    private let machine = NIOLockedValueBox(RateLimiterMachine<ContinuousClock.Instant>())

    init(perAccount: RateLimit, perAddress: RateLimit) {
        self.perAccount = perAccount
        self.perAddress = perAddress
    }

    /// How long until `email` from `address` may try again; nil when it may try now.
    func retryAfter(email: String, address: String, now: ContinuousClock.Instant = .now) -> Duration? {
        machine.withLockedValue { machine in
            let decisions = [
                machine.peek("account:" + email.lowercased(), rate: perAccount, now: now), machine.peek("address:" + address, rate: perAddress, now: now),
            ]
            let refused = decisions.filter { !$0.allowed }
            return refused.isEmpty ? nil : refused.map(\.resetAfter).max()
        }
    }

    /// Counts a failed login of `email` from `address`.
    func failed(email: String, address: String, now: ContinuousClock.Instant = .now) {
        machine.withLockedValue { machine in
            _ = machine.take("account:" + email.lowercased(), rate: perAccount, now: now)
            _ = machine.take("address:" + address, rate: perAddress, now: now)
        }
    }
}
