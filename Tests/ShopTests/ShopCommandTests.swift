import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
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

        let process = Process()
        process.executableURL = shop
        process.arguments =
            ["up", "--data-dir", dataDirectory, "--port-base", String(portBase), "--log-level", "warning"] + (inProcess ? ["--in-process"] : [])
        var environment = ProcessInfo.processInfo.environment
        environment["SHOP_ADMIN_PASSWORD"] = nil
        environment["DATABASE_URL"] = nil
        process.environment = environment
        let output = NIOLockedValueBox("")
        let pipe = Pipe()
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            output.withLockedValue { $0 += String(decoding: data, as: UTF8.self) }
        }
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = {
            exited.continuation.yield($0.terminationStatus); exited.continuation.finish()
        }
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        let deadline = ContinuousClock.now + .seconds(90)
        while !output.withLockedValue({ $0.contains("Press Ctrl-C to stop.") }) {
            try #require(ContinuousClock.now < deadline && process.isRunning, "shop up did not come up: \(output.withLockedValue { $0 })")
            try await Task.sleep(for: .milliseconds(100))
        }
        let banner = output.withLockedValue { $0 }
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

        kill(process.processIdentifier, SIGTERM)
        var iterator = exited.stream.makeAsyncIterator()
        let status = await iterator.next()
        #expect(status == 0)
        // Nothing listens any more.
        #expect(!(await Readiness.isReady(gateway)))
    }
}
