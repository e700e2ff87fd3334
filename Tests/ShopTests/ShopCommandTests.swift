import AsyncHTTPClient
import Foundation
import Logging
import ServiceDatabase
import ServiceTesting
import ShopContracts
import ShopSystem
import Testing

/// `shop up` itself, as a user runs it: one process per service, or all in one (`--in-process`).
@Suite(.serialized) struct ShopCommandTests {
    @Test(arguments: [false, true])
    func shopUpStartsSeedsAndStopsOnSIGTERM(inProcess: Bool) async throws {
        let shop = SystemTests.shopExecutable
        try #require(FileManager.default.isExecutableFile(atPath: shop.path), "build the package first: swift build --build-tests")
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-up-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        let portBase = try SystemTests.freePortBase()

        // Without an admin password or a database of the caller's: the defaults a new user gets.
        let process = try await ChildProcess(
            [shop.path, "up", "--data-dir", dataDirectory, "--port-base", String(portBase), "--log-level", "warning"]
                + (inProcess ? ["--in-process"] : []),
            environment: ["SHOP_ADMIN_PASSWORD": nil, "DATABASE_URL": nil], captureOutput: true
        )
        defer { process.send(SIGKILL) }

        try await eventually("shop up to come up or end", timeout: .seconds(90)) {
            process.output.contains("Press Ctrl-C to stop.") || !process.isRunning
        }
        try #require(process.isRunning, "shop up ended: \(process.output)")
        let banner = process.output
        let gateway = "http://127.0.0.1:\(portBase)"
        #expect(banner.contains("Shop is up: \(gateway)"))

        // The generated admin password is printed once and kept private in the data folder.
        let passwordFile = dataDirectory + "/admin-password"
        let password = try String(contentsOfFile: passwordFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(banner.contains(password))
        #expect((try FileManager.default.attributesOfItem(atPath: passwordFile)[.posixPermissions] as? Int) == 0o600)
        #expect((try FileManager.default.attributesOfItem(atPath: dataDirectory + "/auth/signing-key")[.posixPermissions] as? Int) == 0o600)

        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let health = try await InProcessShop.call(client, .GET, gateway + "/health")
        #expect(health.status == .ok)
        let product = try await InProcessShop.call(client, .GET, gateway + "/api/inventory/product-1")
        #expect(try product.json(ProductDTO.self).price == 29.99)
        let login = try await InProcessShop.call(
            client, .POST, gateway + "/api/auth/login", json: #"{"email":"admin@shop.local","password":"\#(password)"}"#)
        #expect(login.status == .ok)
        try await client.shutdown()

        process.send(SIGTERM)
        #expect(await process.wait() == 0)
        // Nothing listens any more.
        #expect(!(await Readiness.isReady(gateway)))
    }

    /// `shop migrate`: a deployment's step before a rollout. Each named service's tables and the event log's exist
    /// afterwards, a second run changes nothing and succeeds, an unknown service is refused.
    @Test(arguments: TestDatabase.available)
    func shopMigrateAppliesEachServicesMigrationsAndIsSafeTwice(_ engine: TestDatabase) async throws {
        let shop = SystemTests.shopExecutable
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("shop-migrate-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        let database = engine == .postgres ? try await TestDatabase.createPostgresDatabase() : nil
        let url = database?.url ?? ""
        let environment: [String: String?] = ["DATA_DIR": dataDirectory, "DATABASE_URL": url, "EVENTLOG_URL": url]
        for _ in 0..<2 {
            let run = try await ChildProcess.output(of: [shop.path, "migrate", "inventory", "order", "payment-provider"], environment: environment)
            #expect(run.status == 0)
        }
        for (service, table) in [
            ("inventory", "products"), ("order", "orders"), ("payment-provider", "charges"), ("eventlog", "cache_invalidations"),
        ] {
            let configuration = try DatabaseConfiguration(url: url, service: service, dataDirectory: dataDirectory)
            let rows = try await Database.with(configuration, logger: Logger(label: "check")) { database in
                try await database.withConnection { sql in try await sql.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").all().count }
            }
            #expect(rows == 1, "\(service).\(table)")
        }
        let refused = try await ChildProcess.output(of: ["/bin/sh", "-c", #""$0" migrate warehouse 2>&1"#, shop.path])
        #expect(refused.status != 0 && refused.output.contains("unknown service 'warehouse'"), "\(refused.output)")
        if let database { await TestDatabase.dropPostgresDatabase(database.name) }
    }
}
