import Foundation
import Hummingbird
import ServiceCore

/// Routes `/health` (the guide's report; 503 when unhealthy), `/health/live` (the process answers) and
/// `/health/ready` (dependencies answer: route traffic here).
public struct HealthController<Context: RequestContext>: Sendable {
    let checker: HealthChecker
    let service: String

    public init(service: String, checker: HealthChecker) {
        self.service = service
        self.checker = checker
    }

    /// Adds the three routes to `router`.
    public func addRoutes(to router: Router<Context>) {
        router.get("health") { _, _ in try await self.report() }
        router.get("health/ready") { _, _ in try await self.report() }
        router.get("health/live") { _, _ in
            try Self.json(.ok, ["status": "alive", "service": self.service])
        }
    }

    func report() async throws -> Response {
        let report = await self.checker.run()
        return try Self.json(report.status == .healthy ? .ok : .serviceUnavailable, report)
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
