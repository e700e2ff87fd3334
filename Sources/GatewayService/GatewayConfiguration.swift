import Foundation
import NIOCore
import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceProxy
import ShopContracts

/// Configuration of the gateway: where it listens and where each service is.
public struct GatewayConfiguration: Sendable {
    public var settings: ServiceSettings
    /// Base URL of every service the gateway routes to, from `<NAME>_SERVICE_URL` (default `http://127.0.0.1:<port>`).
    public var serviceURLs: [ServiceName: String]
    /// Services whose readiness `/health` aggregates (`GATEWAY_HEALTH_SERVICES`, default: the services built so far).
    public var healthChecked: [ServiceName]
    /// Upstream response timeout in seconds (`UPSTREAM_TIMEOUT_SECONDS`, default 30).
    public var upstreamTimeoutSeconds: Int
    /// Event loop threads of the proxy (`GATEWAY_EVENT_LOOP_THREADS`, default: one per core).
    public var eventLoopThreads: Int
    /// Verifier to use instead of fetching keys from the auth service (tests).
    public var tokenVerifier: TokenVerifier?
    /// Called with the bound port once the gateway listens (tests bind port 0).
    public var onServerRunning: @Sendable (Int) async -> Void = { _ in }

    public init(environment: Environment = Environment()) {
        self.settings = ServiceSettings(name: ServiceName.gateway.rawValue, defaultPort: ServiceName.gateway.port(), environment: environment)
        var urls: [ServiceName: String] = [:]
        for service in ServiceName.allCases where service != .gateway {
            urls[service] = environment.string(service.urlVariable, default: "http://127.0.0.1:\(service.port())")
        }
        self.serviceURLs = urls
        self.healthChecked =
            environment.get("GATEWAY_HEALTH_SERVICES").map { list in
                list.split(separator: ",").compactMap { ServiceName(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
            } ?? ServiceName.implemented.filter { $0 != .gateway }
        self.upstreamTimeoutSeconds = environment.int("UPSTREAM_TIMEOUT_SECONDS", default: 30)
        self.eventLoopThreads = max(1, environment.int("GATEWAY_EVENT_LOOP_THREADS", default: System.coreCount))
    }

    /// The upstream of `service`, parsed from its URL.
    func upstream(_ service: ServiceName) throws -> ProxyUpstream {
        let url = serviceURLs[service] ?? ""
        guard let components = URLComponents(string: url), let host = components.host else {
            throw ConfigurationError(description: "\(service.urlVariable) is not a URL: \(url)")
        }
        return ProxyUpstream(name: service.rawValue, host: host, port: components.port ?? 80)
    }

    struct ConfigurationError: Error, CustomStringConvertible {
        var description: String
    }
}
