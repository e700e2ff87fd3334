import Foundation

/// The admin account of a local system: its password comes from `SHOP_ADMIN_PASSWORD`, or is generated on first start
/// and kept in the data folder (mode 0600) so later starts reuse it.
public enum AdminAccount {
    public static let email = "admin@shop.local"

    /// The password, and whether it was generated just now (then it is printed, once).
    public static func password(dataDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> (
        password: String, generated: Bool
    ) {
        if let password = environment["SHOP_ADMIN_PASSWORD"], !password.isEmpty { return (password, false) }
        let path = (dataDirectory as NSString).appendingPathComponent("admin-password")
        if let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) {
            let password = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !password.isEmpty { return (password, false) }
        }
        let password = generate()
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return (password, true)
    }

    /// 20 random characters with upper and lower case letters and digits (so it passes the signup rules).
    static func generate() -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        let body = (0..<17).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] }
        return "Aa1" + String(body)
    }
}
