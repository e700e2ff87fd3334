import Foundation

/// Client secrets of the services (the guide's client credentials): one random secret per service id.
///
/// Locally they are generated once into a file of the data folder (mode 0600) that every local service process reads;
/// deployed, each service gets its own from the environment (`SERVICE_SECRET`) and the auth service all of them
/// (`SERVICE_CLIENTS=id=secret,…`), e.g. from Kubernetes Secrets. They are never logged.
public enum ServiceSecrets {
    /// The file in `dataDirectory`.
    public static func path(in dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent("secrets/service-clients.json")
    }

    /// The secrets in `dataDirectory`, created for `services` if the file is missing. Safe when several processes start
    /// at once: the file is created with link(2), which fails if another process created it first — and then the file
    /// on disk is the one everybody uses.
    public static func loadOrCreate(dataDirectory: String, services: [String]) throws -> [String: String] {
        let file = path(in: dataDirectory)
        for _ in 0..<3 {
            let existed = FileManager.default.fileExists(atPath: file)
            // A file that exists but cannot be read is an error, never a reason to make new secrets for everybody.
            var secrets = existed ? try load(file) : [:]
            let missing = services.filter { secrets[$0] == nil }
            guard !missing.isEmpty else { return secrets }
            for service in missing { secrets[service] = randomSecret() }
            let directory = (file as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let temporary = file + ".\(UUID().uuidString).tmp"
            guard
                FileManager.default.createFile(atPath: temporary, contents: try JSONEncoder().encode(secrets), attributes: [.posixPermissions: 0o600])
            else {
                throw CocoaError(.fileWriteUnknown)
            }
            defer { try? FileManager.default.removeItem(atPath: temporary) }
            if existed {
                // A file from an older version that lacks a newer service: extended with the existing secrets kept,
                // then read back, so that two processes extending it at once both answer what is on disk.
                guard rename(temporary, file) == 0 else { throw CocoaError(.fileWriteUnknown) }
                continue
            }
            if link(temporary, file) == 0 { return secrets }
            guard errno == EEXIST else { throw CocoaError(.fileWriteUnknown) }
            // Another process created it first: use the file as it is (next round).
        }
        return try load(file)
    }

    static func load(_ file: String) throws -> [String: String] {
        try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: file)))
    }

    /// `id=secret,id=secret` (the `SERVICE_CLIENTS` form).
    public static func parse(_ text: String) -> [String: String] {
        var clients: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 {
                clients[String(parts[0]).trimmingCharacters(in: .whitespaces)] = String(parts[1]).trimmingCharacters(in: .whitespaces)
            }
        }
        return clients
    }

    /// 32 random bytes, base64url.
    public static func randomSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Base64URL.encode(Data(bytes))
    }

    /// Compares without leaking, through timing, how much of a guess was right.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
