import Hummingbird
import ServiceCore

/// Hummingbird's environment as a source of settings (`ServiceSettings(name:defaultPort:environment:)`, `string`, `int`,
/// `bool`).
extension Environment: SettingsSource {}
