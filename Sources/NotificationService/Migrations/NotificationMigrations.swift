import ServiceDatabase

/// The notification service's schema, in order.
enum NotificationMigrations {
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "recipients and notifications",
            statements: [
                """
                CREATE TABLE recipients (
                    user_id TEXT PRIMARY KEY,
                    email TEXT NOT NULL,
                    name TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                )
                """,
                """
                CREATE TABLE notifications (
                    id TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    type TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    body TEXT NOT NULL,
                    created_at TEXT NOT NULL
                )
                """,
                "CREATE INDEX notifications_by_user ON notifications (user_id, created_at)",
            ]
        )
    ]
}
