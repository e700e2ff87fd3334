import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import ServiceCore
import ServiceHTTP
import ServiceTesting
import Testing

@Suite struct CorrelationAndErrorTests {
    struct Echo: Codable, ResponseEncodable {
        var correlation: String
        var taskLocal: String?
    }

    func makeApp(maxBody: Int = 64, logger: Logger = Logger(label: "test")) -> some ApplicationProtocol {
        let settings = ServiceSettings(name: "test", port: 0, maxBodyBytes: maxBody)
        let router = ServiceApplication.makeRouter(settings: settings, health: HealthChecker())
        router.get("echo") { _, context in Echo(correlation: context.correlationID, taskLocal: CorrelationID.current) }
        router.post("body") { request, context -> String in
            var request = request
            _ = try await request.jsonBody(context: context)
            return "ok"
        }
        router.get("boom") { _, _ -> String in throw CancellationError() }
        router.get("crash") { _, _ -> String in
            struct Internal: Error {}
            throw Internal()
        }
        return ServiceApplication.makeApplication(router: router, settings: settings, logger: logger)
    }

    @Test func acceptsAGivenCorrelationIDAndReturnsIt() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/echo", method: .get, headers: [.correlationID: "abc-123"]) { response async throws in
                #expect(response.headers[.correlationID] == "abc-123")
                let echo = try response.json(Echo.self)
                #expect(echo.correlation == "abc-123")
                #expect(echo.taskLocal == "abc-123")
            }
        }
    }

    @Test func generatesACorrelationIDWhenMissingOrUnsafe() async throws {
        try await makeApp().test(.router) { client in
            for headers: HTTPFields in [[:], [.correlationID: "bad id\u{7f}"], [.correlationID: String(repeating: "a", count: 200)]] {
                try await client.execute(uri: "/echo", method: .get, headers: headers) { response async throws in
                    let id = try #require(response.headers[.correlationID])
                    #expect(UUID(uuidString: id) != nil)
                    #expect(try response.json(Echo.self).correlation == id)
                }
            }
        }
    }

    @Test func errorsAreJSONWithTheCorrelationID() async throws {
        try await makeApp().test(.router) { client in
            try await client.execute(uri: "/missing", method: .get, headers: [.correlationID: "c1"]) { response async throws in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                #expect(response.headers[.correlationID] == "c1")
                #expect(response.errorMessage != nil)
            }
            try await client.execute(uri: "/crash", method: .get) { response async throws in
                #expect(response.status == .internalServerError)
                #expect(response.errorMessage == "Internal server error")
            }
        }
    }

    @Test func malformedEmptyAndOversizedBodiesAre4xx() async throws {
        try await makeApp(maxBody: 64).test(.router) { client in
            try await client.execute(uri: "/body", method: .post, headers: .json, body: .json("{not json")) { response async throws in
                #expect(response.status == .badRequest)
                #expect(response.errorMessage == "Malformed JSON body")
            }
            try await client.execute(uri: "/body", method: .post, headers: .json) { response async throws in
                #expect(response.status == .badRequest)
            }
            let big = ByteBuffer(string: "{\"a\":\"" + String(repeating: "x", count: 200) + "\"}")
            try await client.execute(uri: "/body", method: .post, headers: .json, body: big) { response async throws in
                #expect(response.status == .contentTooLarge)
                #expect(response.errorMessage == "Request body too large")
            }
            try await client.execute(uri: "/body", method: .post, headers: .json, body: .json(#"{"a":1}"#)) { response async throws in
                #expect(response.status == .ok)
            }
        }
    }

    /// A client (the gateway refusing a chunked body over its limit) that goes away in the middle of a body: the
    /// service notes it at debug level and logs no "Unhandled error".
    @Test func aBodyCutOffMidwayIsNotAnUnhandledError() async throws {
        let lines = NIOLockedValueBox<[String]>([])
        let logger = Logger(label: "cut") { label in
            JSONLogHandler(label: label, service: "test", level: .debug, output: .custom { line in lines.withLockedValue { $0.append(line) } })
        }
        try await makeApp(maxBody: 1 << 20, logger: logger).test(.live) { client in
            let port = try #require(client.port)
            let connection = try await RawHTTPConnection(port: port)
            try await connection.send(
                "POST /body HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{\"a\":\"0123")
            await connection.close()
            try await eventually("the cut-off body to be noticed") {
                lines.withLockedValue { $0.contains { $0.contains("Request body ended early") } }
            }
            #expect(!lines.withLockedValue { $0.contains { $0.contains("Unhandled error") } })
        }
    }

    @Test func jsonLogLinesCarryServiceLevelAndCorrelation() throws {
        let lines = NIOLockedValueBox<[String]>([])
        var handler = JSONLogHandler(label: "l", service: "user", level: .info, output: .custom { line in lines.withLockedValue { $0.append(line) } })
        handler[metadataKey: "correlationId"] = "corr-9"
        let logger = Logger(label: "l") { _ in handler }
        logger.info("hello", metadata: ["orderId": "o1"])
        logger.debug("hidden")
        let written = lines.withLockedValue { $0 }
        #expect(written.count == 1)
        let line = try #require(written.first)
        #expect(line.hasSuffix("\n") && line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["service"] as? String == "user")
        #expect(object["level"] as? String == "info")
        #expect(object["message"] as? String == "hello")
        #expect(object["correlationId"] as? String == "corr-9")
        #expect(object["orderId"] as? String == "o1")
        #expect((object["timestamp"] as? String)?.hasSuffix("Z") == true)
    }

    /// The hand-written JSON reads back as what was logged, whatever the strings hold.
    @Test func logLinesAreValidJSONForAnyText() throws {
        let lines = NIOLockedValueBox<[String]>([])
        let handler = JSONLogHandler(label: "l", service: "user", level: .info, output: .custom { line in lines.withLockedValue { $0.append(line) } })
        let logger = Logger(label: "l") { _ in handler }
        let nasty = "quote \" backslash \\ slash / newline \n tab \t nul \u{0} bell \u{7} del \u{7F} é 😀 \u{2028}"
        logger.info(
            "\(nasty)",
            metadata: [
                "text": .string(nasty), "count": .stringConvertible(42), "list": .array(["a", .string(nasty)]),
                "nested": .dictionary(["b": "2", "a": .dictionary(["x": "y"])]),
            ])
        let line = try #require(lines.withLockedValue { $0 }.first)
        #expect(line.hasSuffix("\n") && !line.dropLast().contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == nasty)
        #expect(object["text"] as? String == nasty)
        #expect(object["count"] as? String == "42")
        #expect(object["list"] as? [String] == ["a", nasty])
        #expect(((object["nested"] as? [String: Any])?["a"] as? [String: String]) == ["x": "y"])
        let timestamp = try #require(object["timestamp"] as? String)
        #expect(timestamp.count == 24 && timestamp.hasSuffix("Z"), "\(timestamp)")
        let parsed = try #require(try? Date(timestamp, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))
        #expect(abs(parsed.timeIntervalSinceNow) < 60)
        // Keys come sorted, so lines of one kind read alike.
        let keys = line.split(separator: ",").compactMap {
            $0.split(separator: ":").first.map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "{\"")) }
        }
        #expect(keys.first == "count")
    }

    @Test func logsGoToCombinedAndErrorFilesAndLevelsAreSetPerService() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("logs-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let echoed = NIOLockedValueBox<[String]>([])
        let output = try JSONLogHandler.Output.files(in: directory, also: .custom { line in echoed.withLockedValue { $0.append(line) } })
        let logger = Logger(label: "files") { label in JSONLogHandler(label: label, service: "order", level: .info, output: output) }
        logger.info("fine")
        logger.debug("too detailed")
        logger.error("broken")
        let combined = try String(contentsOfFile: directory + "/combined.log", encoding: .utf8).split(separator: "\n")
        let errors = try String(contentsOfFile: directory + "/error.log", encoding: .utf8).split(separator: "\n")
        #expect(combined.count == 2 && combined[0].contains(#""message":"fine""#) && combined[1].contains(#""message":"broken""#))
        #expect(errors.count == 1 && errors[0].contains(#""level":"error""#))
        #expect(echoed.withLockedValue { $0.count } == 2)

        let environment = Environment(values: ["LOG_LEVEL": "info", "LOG_LEVEL_ORDER": "debug"])
        #expect(ServiceSettings(name: "order", defaultPort: 1, environment: environment).logLevel == .debug)
        #expect(ServiceSettings(name: "user", defaultPort: 1, environment: environment).logLevel == .info)
    }
}
