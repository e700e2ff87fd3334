import ServiceDatabase

/// The user service's schema, in order.
enum UserMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "create users",
            statements: [
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY,
                    email TEXT NOT NULL UNIQUE,
                    name TEXT NOT NULL,
                    password_hash TEXT NOT NULL,
                    role TEXT NOT NULL,
                    profile TEXT,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """
            ]
        )
    ]
}
