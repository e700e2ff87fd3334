import Foundation

/// `Tests/Fixtures/smtp_server.py` (aiosmtpd, from PyPI) running for one test on a free loopback port: a real SMTP
/// server that stores each message it accepts as a file, and can be told to misbehave (`--mode tempfail-first`,
/// `reject`, `silent`), to require AUTH (`--auth USER:PASS`) or to offer STARTTLS (`--tls-cert`, `--tls-key`).
public struct SMTPTestServer: Sendable {
    /// The fixture script, found from this file's place in the repository.
    public static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Fixtures/smtp_server.py")

    public let port: Int
    /// Where the accepted messages are stored.
    public let directory: URL

    /// Starts the server with `arguments`, runs `body`, and stops the server and removes its folder however `body` ends.
    public static func with<T>(_ arguments: [String] = [], _ body: (SMTPTestServer) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smtp-fixture-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = try await ChildProcess(["python3", script.path, "--dir", directory.path] + arguments, captureOutput: true)
        do {
            let line = await process.readLine(within: .seconds(30))
            guard line.hasPrefix("PORT "), let port = Int(line.dropFirst(5)) else {
                throw ChildProcess.Failed(
                    "smtp_server.py did not report its port (is aiosmtpd installed? pip install aiosmtpd); it printed '\(line)'")
            }
            let result = try await body(SMTPTestServer(port: port, directory: directory))
            await process.stop()
            return result
        } catch {
            await process.stop()
            throw error
        }
    }

    /// The messages accepted so far, in the order of their file names.
    public func messages() throws -> [ReceivedMessage] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".eml") }
        return try names.sorted().map { try ReceivedMessage(Data(contentsOf: directory.appendingPathComponent($0))) }
    }
}

/// One message as the fixture stored it: the envelope, how the session went, and the data as received.
public struct ReceivedMessage: Sendable {
    public var from = ""
    public var recipients: [String] = []
    public var tls = false
    public var auth = "-"
    public var data = Data()

    init(_ file: Data) throws {
        let bytes = [UInt8](file)
        guard let end = bytes.indices.dropLast().first(where: { bytes[$0] == 0x0A && bytes[$0 + 1] == 0x0A }) else {
            throw ChildProcess.Failed("a message file without its header")
        }
        data = Data(bytes[(end + 2)...])
        for line in String(decoding: bytes[..<end], as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            let value = parts.count > 1 ? parts[1] : ""
            switch parts.first ?? "" {
            case "from": from = value
            case "to": recipients.append(value)
            case "tls": tls = value == "yes"
            case "auth": auth = value
            default: break
            }
        }
    }

    /// The message's text.
    public var text: String { String(decoding: data, as: UTF8.self) }
}
