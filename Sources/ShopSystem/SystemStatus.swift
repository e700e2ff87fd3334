import AsyncHTTPClient
import Foundation
import NIOCore
import ShopContracts

/// What `shop status` reports: every instance of a running local system — the well-known ports, and whatever the
/// gateway's registry lists (instances on free ports, every gateway sharing the registry) — with its URL and whether
/// it answers ready.
public struct SystemStatus: Codable, Sendable, Equatable {
    public struct Instance: Codable, Sendable, Equatable {
        public var service: String
        public var url: String
        /// The registry's id for the instance; nil for one only known by its well-known port.
        public var id: String?
        public var ready: Bool
    }

    public var gateway: String
    public var instances: [Instance]
    /// Whether the registry could be read (it needs the admin account); without it only the well-known ports are listed.
    public var registry: String
    public var ready: Bool { instances.allSatisfy(\.ready) }

    enum CodingKeys: String, CodingKey { case gateway, instances, registry, ready }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(gateway, forKey: .gateway)
        try container.encode(instances, forKey: .instances)
        try container.encode(registry, forKey: .registry)
        try container.encode(ready, forKey: .ready)
    }

    public init(gateway: String, instances: [Instance], registry: String) {
        self.gateway = gateway
        self.instances = instances
        self.registry = registry
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            gateway: try container.decode(String.self, forKey: .gateway), instances: try container.decode([Instance].self, forKey: .instances),
            registry: try container.decode(String.self, forKey: .registry))
    }

    struct Registered: Decodable {
        struct Entry: Decodable {
            var id: String
            var name: String
            var url: String
        }
        var services: [String: [Entry]]
    }

    /// Reads the registry through the gateway as the admin, adds the well-known ports, and asks each for readiness.
    public static func collect(system: LocalSystem, adminPassword: String?, client: HTTPClient = .shared) async -> SystemStatus {
        var found: [(service: String, url: String, id: String?)] = system.services.map { ($0.rawValue, system.url(of: $0), nil) }
        var registry = "not read: no admin password"
        if let adminPassword {
            do {
                let login = try await DemoCatalog.send(
                    client, .POST, system.gatewayURL + "/api/auth/login", body: CredentialCheck(email: AdminAccount.email, password: adminPassword))
                guard login.status == .ok else { throw DemoCatalog.SeedingFailed(description: "admin login answered \(login.status.code)") }
                let token = try JSONDecoder().decode(TokenResponse.self, from: login.body).token
                let answer = try await DemoCatalog.send(client, .GET, system.gatewayURL + "/services", body: Optional<String>.none, token: token)
                guard answer.status == .ok else { throw DemoCatalog.SeedingFailed(description: "GET /services answered \(answer.status.code)") }
                let services = try JSONDecoder().decode(Registered.self, from: answer.body).services
                for entry in services.values.joined() {
                    if let known = found.firstIndex(where: { $0.url == entry.url }) {
                        found[known].id = entry.id
                    } else {
                        found.append((entry.name, entry.url, entry.id))
                    }
                }
                registry = "read"
            } catch {
                registry = "not read: \(error)"
            }
        }
        let order = Dictionary(uniqueKeysWithValues: ServiceName.allCases.enumerated().map { ($1.rawValue, $0) })
        found.sort { (order[$0.service] ?? .max, $0.url) < (order[$1.service] ?? .max, $1.url) }
        var instances: [Instance] = []
        await withTaskGroup(of: (Int, Bool).self) { group in
            for (index, instance) in found.enumerated() {
                group.addTask { (index, await Readiness.isReady(instance.url, client: client)) }
            }
            var ready = [Bool](repeating: false, count: found.count)
            for await (index, answer) in group { ready[index] = answer }
            instances = zip(found, ready).map { Instance(service: $0.service, url: $0.url, id: $0.id, ready: $1) }
        }
        return SystemStatus(gateway: system.gatewayURL, instances: instances, registry: registry)
    }
}
