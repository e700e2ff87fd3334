import NIOConcurrencyHelpers
import ServiceResilience

/// Failed logins counted per account and per client address: once either has used its budget, further attempts are
/// refused (429) until the window ends, whether the password is right or not, so guessing gains nothing. An attempt
/// takes its place in both budgets before the password is checked — so a burst of simultaneous guesses cannot all slip
/// past the count — and gives it back when it succeeds (or could not be checked). Per process; each auth instance
/// counts its own.
final class LoginThrottle: Sendable {
    let perAccount: RateLimit
    let perAddress: RateLimit
    private let machine = NIOLockedValueBox(RateLimiterMachine<ContinuousClock.Instant>())

    init(perAccount: RateLimit, perAddress: RateLimit) {
        self.perAccount = perAccount
        self.perAddress = perAddress
    }

    /// Starts an attempt of `email` from `address`: nil when it may go ahead (and counts as a failure until
    /// ``succeeded(email:address:)``), else how long until it may.
    func begin(email: String, address: String, now: ContinuousClock.Instant = .now) -> Duration? {
        let (account, address) = keys(email, address)
        return machine.withLockedValue { machine in
            let decisions = [machine.peek(account, rate: perAccount, now: now), machine.peek(address, rate: perAddress, now: now)]
            let refused = decisions.filter { !$0.allowed }
            guard refused.isEmpty else { return refused.map(\.resetAfter).max() }
            _ = machine.take(account, rate: perAccount, now: now)
            _ = machine.take(address, rate: perAddress, now: now)
            return nil
        }
    }

    /// The attempt begun for `email` from `address` was no failed guess: its place is given back.
    func succeeded(email: String, address: String, now: ContinuousClock.Instant = .now) {
        let (account, address) = keys(email, address)
        machine.withLockedValue { machine in
            machine.giveBack(account, rate: perAccount, now: now)
            machine.giveBack(address, rate: perAddress, now: now)
        }
    }

    private func keys(_ email: String, _ address: String) -> (String, String) {
        ("account:" + email.lowercased(), "address:" + address)
    }
}
