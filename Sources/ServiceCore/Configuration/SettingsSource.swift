import Foundation

/// Where settings are read from: the process's environment (`[String: String]`), Hummingbird's `Environment` (conformed
/// in ServiceHTTP), or anything else that answers a value by name.
public protocol SettingsSource: Sendable {
    /// The value of `key`, or nil when it is not set.
    func get(_ key: String) -> String?
}

extension Dictionary: SettingsSource where Key == String, Value == String {
    public func get(_ key: String) -> String? { self[key] }
}

extension SettingsSource {
    /// Reads a string setting, falling back to `defaultValue` when unset or empty.
    public func string(_ key: String, default defaultValue: String) -> String {
        guard let value = self.get(key), !value.isEmpty else { return defaultValue }
        return value
    }

    /// Reads an integer setting; an unset or unparsable value yields `defaultValue`.
    public func int(_ key: String, default defaultValue: Int) -> Int {
        self.get(key).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? defaultValue
    }

    /// Reads a boolean setting (`1/true/yes/on` and `0/false/no/off`).
    public func bool(_ key: String, default defaultValue: Bool) -> Bool {
        switch self.get(key)?.lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: defaultValue
        }
    }
}
