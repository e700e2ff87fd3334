import Foundation
import SQLKit
import ServiceCore
import ServiceDatabase
import ServiceMessaging
import ShopContracts

/// ``UserRepository`` on the service's own SQL database (SQLite or PostgreSQL).
struct SQLUserRepository: UserRepository {
    let database: Database
    /// Publishes `user.created` / `user.updated` through the outbox, in the transaction of the change.
    let events: OutboxPublisher

    func create(_ user: User) async throws {
        do {
            try await database.transaction { sql in
                try await sql.raw(
                    """
                    INSERT INTO users (id, email, name, password_hash, role, profile, created_at, updated_at)
                    VALUES (\(bind: user.id), \(bind: user.email), \(bind: user.name), \(bind: user.passwordHash), \(bind: user.role.rawValue),
                            \(bind: Self.encode(user.profile)), \(bind: user.createdAt), \(bind: user.updatedAt))
                    """
                ).run()
                try await events.add(EventType.userCreated, user, in: sql)
            }
            events.committed()
        } catch  where Database.isUniqueViolation(error) {
            throw UserRepositoryError.duplicateEmail
        }
    }

    func find(id: String) async throws -> User? {
        try await database.withConnection { sql in
            try await sql.raw("SELECT * FROM users WHERE id = \(bind: id)").first().map(Self.user)
        }
    }

    func find(email: String) async throws -> User? {
        try await database.withConnection { sql in
            try await sql.raw("SELECT * FROM users WHERE email = \(bind: email.lowercased())").first().map(Self.user)
        }
    }

    func update(id: String, name: String?, passwordHash: String?, profile: UserDTO.Profile??, updatedAt: String) async throws -> User? {
        let updated = try await database.transaction { sql -> User? in
            // One UPDATE of just the changed columns: concurrent changes of different fields both survive.
            var update = sql.update("users").set("updated_at", to: updatedAt)
            if let name { update = update.set("name", to: name) }
            if let passwordHash { update = update.set("password_hash", to: passwordHash) }
            if let profile { update = update.set("profile", to: try Self.encode(profile)) }
            try await update.where("id", .equal, id).run()
            guard let user = try await sql.raw("SELECT * FROM users WHERE id = \(bind: id)").first().map(Self.user) else { return nil }
            try await events.add(EventType.userUpdated, user, in: sql)
            return user
        }
        events.committed()
        return updated
    }

    static func user(_ row: any SQLRow) throws -> User {
        let profileJSON = try row.decodeNil(column: "profile") ? nil : try row.decode(column: "profile", as: String.self)
        return User(
            id: try row.decode(column: "id", as: String.self),
            email: try row.decode(column: "email", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            passwordHash: try row.decode(column: "password_hash", as: String.self),
            role: try row.decode(column: "role", of: "users", as: Identity.Role.self),
            profile: try profileJSON.map { try JSONDecoder().decode(UserDTO.Profile.self, from: Data($0.utf8)) },
            createdAt: try row.decode(column: "created_at", as: String.self),
            updatedAt: try row.decode(column: "updated_at", as: String.self)
        )
    }

    static func encode(_ profile: UserDTO.Profile?) throws -> String? {
        try profile.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
    }
}

extension OutboxPublisher {
    /// Adds `user.created` or `user.updated` for `user`.
    func add(_ type: String, _ user: User, in sql: any SQLDatabase) async throws {
        try await add(type, key: user.id, payload: UserChanged(id: user.id, email: user.email, name: user.name, updatedAt: user.updatedAt), in: sql)
    }
}
