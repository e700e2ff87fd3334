import Foundation
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceProxy
import ShopContracts

/// The gateway's `/health`: every routed service's full report (its database, event log and other checks nested under
/// it, with response times) and the registry the gateway hosts, in the guide's report shape (503 if any is unhealthy).
/// Readiness only: `/health/live` never asks a dependency.
struct GatewayHealth: Sendable {
    let checker: HealthChecker

    init(configuration: GatewayConfiguration, registry: ServiceRegistry) {
        var checker = HealthChecker()
        for service in configuration.healthChecked {
            let client = ServiceClient(name: service.rawValue, baseURL: configuration.serviceURLs[service] ?? "", timeout: .seconds(2))
            checker.addDetailedCheck(service.rawValue) { () async throws -> [String: HealthChecker.CheckResult]? in
                let response = try await client.get("/health")
                // A service answers its report whether healthy (200) or not (503).
                guard let report = try? JSONDecoder().decode(HealthChecker.Report.self, from: response.body) else {
                    throw APIError.unavailable("\(service.rawValue) answered \(response.status)")
                }
                return report.checks
            }
        }
        checker.addDetailedCheck("registry") { () async throws -> [String: HealthChecker.CheckResult]? in
            // The registry lives in this process: it answers as long as the gateway does; its instances are listed at
            // `/services`.
            _ = registry.version
            return nil
        }
        self.checker = checker
    }

    func response() async -> ProxyDecision {
        let report = await checker.run()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(report)).map { String(decoding: $0, as: UTF8.self) } ?? #"{"status":"unhealthy"}"#
        return .respond(.json(report.status == .healthy ? .ok : .serviceUnavailable, body, headers: ["cache-control": "no-store"]))
    }
}
