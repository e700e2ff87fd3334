import AsyncHTTPClient
import Foundation
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
}
