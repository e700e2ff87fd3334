import Foundation
import NIOConcurrencyHelpers

/// A real `redis-server` (the Debian package; `scripts/test.sh` installs it) on loopback on a free port, with no
/// persistence, for one test: killed, paused and restarted on the same port when the test says so.
public final class RedisTestServer: Sendable {
    public let port: Int
    let arguments: [String]
    let directory: URL
    /// PEM files when it serves TLS only (`rediss://`): its certificate (self-signed, so also the CA) and key.
    public let tls: (certificate: String, key: String)?
    private let process: NIOLockedValueBox<ChildProcess?>

    /// `redis://127.0.0.1:<port>`, or `rediss://localhost:<port>` with TLS.
    public var url: String { tls == nil ? "redis://127.0.0.1:\(port)" : "rediss://localhost:\(port)" }

    private init(port: Int, arguments: [String], directory: URL, tls: (certificate: String, key: String)?) {
        self.port = port
        self.arguments = arguments
        self.directory = directory
        self.tls = tls
        self.process = NIOLockedValueBox(nil)
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--requirepass", "secret"]`), runs `body`, stops it.
    /// With `tls` it serves TLS only, with a certificate for `localhost` that openssl makes.
    public static func with<T>(_ extraArguments: [String] = [], tls: Bool = false, _ body: (RedisTestServer) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var certificate: (certificate: String, key: String)?
        if tls {
            let files = (certificate: directory.appendingPathComponent("cert.pem").path, key: directory.appendingPathComponent("key.pem").path)
            let status = try await ChildProcess.run([
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                "-days", "1", "-keyout", files.key, "-out", files.certificate,
            ])
            guard status == 0 else { throw ChildProcess.Failed("openssl could not make a certificate") }
            certificate = files
        }
        let server = RedisTestServer(port: try freePort(), arguments: extraArguments, directory: directory, tls: certificate)
        try await server.start()
        do {
            let result = try await body(server)
            await server.kill()
            return result
        } catch {
            await server.kill()
            throw error
        }
    }

    /// Starts (or starts again) the server on its port and waits until it answers.
    public func start() async throws {
        let listen =
            tls.map {
                ["--port", "0", "--tls-port", String(port), "--tls-cert-file", $0.certificate, "--tls-key-file", $0.key, "--tls-auth-clients", "no"]
            }
            ?? ["--port", String(port)]
        let child = try await ChildProcess(
            ["redis-server"] + listen + [
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path, "--protected-mode", "no",
            ]
                + arguments
        )
        let cli = ["redis-cli", "-p", String(port)] + (tls.map { ["--tls", "--cacert", $0.certificate, "-h", "localhost"] } ?? [])
        process.withLockedValue { $0 = child }
        do {
            try await eventually("redis-server on port \(port) to answer", timeout: .seconds(10)) {
                guard child.isRunning else { throw ChildProcess.Failed("redis-server ended (is it installed? apt-get install redis-server)") }
                let reply = try await ChildProcess.output(of: cli + ["PING"])
                return reply.output.contains("PONG") || reply.output.contains("NOAUTH")
            }
        } catch {
            await child.stop()
            throw error
        }
    }

    /// Kills the server (SIGKILL) and waits until it has gone.
    public func kill() async {
        guard let child = process.withLockedValue({ $0 }) else { return }
        child.send(SIGKILL)
        _ = await child.wait()
    }

    /// Stops the server answering (SIGSTOP) without closing its connections; ``resume()`` continues it.
    public func pause() {
        process.withLockedValue { $0 }?.send(SIGSTOP)
    }

    public func resume() {
        process.withLockedValue { $0 }?.send(SIGCONT)
    }

    /// A port nothing listens on now (bound to port 0 and released).
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ChildProcess.Failed("no socket") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
        guard bound == 0 else { throw ChildProcess.Failed("could not bind a port") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
