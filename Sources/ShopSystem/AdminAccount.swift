import Foundation

/// The admin account of a local system: its password comes from `SHOP_ADMIN_PASSWORD`, or is generated on first start
/// and kept in the data folder (mode 0600) so later starts reuse it.
public enum AdminAccount {
    public static let email = "admin@shop.local"

    /// The password, and whether it was generated just now (then it is printed, once).
    public static func password(dataDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> (
        password: String, generated: Bool
    ) {
        if let password = existingPassword(dataDirectory: dataDirectory, environment: environment) { return (password, false) }
        let path = (dataDirectory as NSString).appendingPathComponent("admin-password")
        let password = generate()
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return (password, true)
    }

    /// The password if there is one (`SHOP_ADMIN_PASSWORD`, or the data folder's file), without making one.
    public static func existingPassword(dataDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let password = environment["SHOP_ADMIN_PASSWORD"], !password.isEmpty { return password }
        let path = (dataDirectory as NSString).appendingPathComponent("admin-password")
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return password.isEmpty ? nil : password
    }

    /// 20 random characters with upper and lower case letters and digits (so it passes the signup rules).
    static func generate() -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        let body = (0..<17).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] }
        return "Aa1" + String(body)
    }
}
