import Foundation

/// The Redis a whole test run may share (`TEST_REDIS_URL`, set by `scripts/test.sh` for its second pass): when set, the
/// test harnesses run services and gateways with it, each under a key prefix of its own so tests never see each
/// other's keys.
public enum TestRedis {
    public static var url: String? {
        ProcessInfo.processInfo.environment["TEST_REDIS_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A key prefix no other test uses.
    public static func freshPrefix() -> String { "test-\(UUID().uuidString.prefix(8).lowercased()):" }
}
