import ServiceCore
import ShopContracts

/// Storage of users.
protocol UserRepository: Sendable {
    /// Stores a new user; throws ``UserRepositoryError/duplicateEmail`` when the email is taken.
    func create(_ user: User) async throws
    func find(id: String) async throws -> User?
    func find(email: String) async throws -> User?
    /// Applies `changes` (with the password already hashed) and returns the updated user, or nil when unknown.
    func update(id: String, name: String?, passwordHash: String?, profile: UserDTO.Profile??, updatedAt: String) async throws -> User?
}

enum UserRepositoryError: Error {
    case duplicateEmail
}
