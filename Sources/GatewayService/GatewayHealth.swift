import Foundation
import ServiceCore
import ServiceProxy
import ShopContracts

/// The gateway's `/health`: the readiness of every routed service, in the guide's report shape (503 if any is down).
struct GatewayHealth: Sendable {
    let checker: HealthChecker

    init(configuration: GatewayConfiguration) {
        var checker = HealthChecker()
        for service in configuration.healthChecked {
            let client = ServiceClient(name: service.rawValue, baseURL: configuration.serviceURLs[service] ?? "", timeout: .seconds(2))
            checker.addCheck(service.rawValue) {
                let response = try await client.get("/health/ready")
                guard response.isSuccess else { throw APIError.unavailable("\(service.rawValue) answered \(response.status)") }
            }
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
