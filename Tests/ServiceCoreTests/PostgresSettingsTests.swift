import Foundation
import Logging
import SQLKit
import ServiceDatabase
import ServiceResilience
import ServiceTesting
import Testing

/// PostgreSQL as deployed: TLS (`sslmode`, `sslrootcert`), pool size and timeouts from the URL.
@Suite struct PostgresSettingsTests {
    @Test func theURLsQueryParametersBecomeSettings() throws {
        let url =
            "postgres://app:s3cret@db.internal:6543/shop?schema=order_service&sslmode=verify-full&sslrootcert=/etc/ca.pem&pool_size=25&connect_timeout=3&statement_timeout=1500"
        guard case .postgres(let settings) = try DatabaseConfiguration(url: url, service: "order", dataDirectory: "") else {
            Issue.record("not PostgreSQL")
            return
        }
        #expect(settings.host == "db.internal" && settings.port == 6543 && settings.database == "shop" && settings.schema == "order_service")
        #expect(settings.tls == .verifyFull(rootCertificate: "/etc/ca.pem"))
        #expect(settings.poolSize == 25 && settings.connectTimeout == .seconds(3) && settings.statementTimeout == .milliseconds(1500))
        guard case .postgres(let plain) = try DatabaseConfiguration(url: "postgres://db/shop", service: "payment-provider", dataDirectory: "") else {
            return
        }
        #expect(plain.tls == .disable && plain.poolSize == 10 && plain.statementTimeout == nil && plain.schema == "payment_provider_service")
        guard case .postgres(let required) = try DatabaseConfiguration(url: "postgres://db/shop?sslmode=require", service: "x", dataDirectory: "")
        else { return }
        #expect(required.tls == .require)
        for bad in [
            "postgres://db/shop?sslmode=prefer", "postgres://db/shop?sslmode=require&sslrootcert=/ca.pem", "postgres://db/shop?pool_size=0",
            "postgres://db/shop?pool_size=many", "postgres://db/shop?connect_timeout=-1", "postgres://db/shop?statement_timeout=0",
            "postgres://db/shop?sslmod=require", "postgres://db/shop?pool_size=5&pool_size=6", "postgres://db/shop?schema=bad-name",
        ] {
            #expect(throws: DatabaseConfiguration.InvalidURL.self, "\(bad)") { try DatabaseConfiguration(url: bad, service: "x", dataDirectory: "") }
        }
    }

    /// Whether the session of `url` is encrypted, as the server sees it.
    static func encrypted(_ url: String) async throws -> Bool {
        try await Database.with(try DatabaseConfiguration(url: url, service: "tlscheck", dataDirectory: ""), logger: Logger(label: "tls")) {
            database in
            try await database.withConnection { sql in
                try await sql.raw("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").first()?.decode(column: "ssl", as: Bool.self) ?? false
            }
        }
    }

    static var verifiedURL: String? {
        TestDatabase.postgresURL.flatMap { $0.contains("sslmode=verify-full") ? $0 : nil }
    }

    @Test(.enabled(if: verifiedURL != nil, "the test server runs with TLS (scripts/test.sh starts it so)"))
    func theServicesTalkToPostgreSQLOverVerifiedTLS() async throws {
        let url = try #require(Self.verifiedURL)
        #expect(try await Self.encrypted(url))
        // The same server without TLS is a plain session (the check above can fail).
        var plain = URLComponents(string: url)!
        plain.queryItems = plain.queryItems?.filter { !$0.name.hasPrefix("ssl") }
        #expect(try await !Self.encrypted(plain.string!))
        // A certificate that does not chain to the configured root is refused.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let stranger = folder.appendingPathComponent("other.pem").path
        let made = try await ChildProcess.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout",
            folder.appendingPathComponent("k.pem").path,
            "-out", stranger,
        ])
        try #require(made == 0)
        var wrong = URLComponents(string: url)!
        wrong.queryItems = (wrong.queryItems ?? []).filter { $0.name != "sslrootcert" } + [URLQueryItem(name: "sslrootcert", value: stranger)]
        // (The pool keeps trying to connect; a few seconds without a session is the refusal.)
        let refused = wrong.string!
        await #expect(throws: (any Error).self) { _ = try await withTimeout(.seconds(5)) { try await Self.encrypted(refused) } }
    }
}
