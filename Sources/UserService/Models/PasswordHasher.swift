import HummingbirdBcrypt
import NIOPosix

/// bcrypt hashing off the cooperative thread pool (a hash at cost 10 takes tens of milliseconds of CPU).
struct PasswordHasher: Sendable {
    let cost: UInt8
    /// A hash checked against when the email is unknown, at the same cost, so a login takes as long whether or not the
    /// account exists.
    let decoyHash: String

    init(cost: UInt8) {
        self.cost = cost
        self.decoyHash = Bcrypt.hash("decoy-password-for-timing", cost: cost)
    }

    func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
    }
}
