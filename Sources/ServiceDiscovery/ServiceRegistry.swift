import Foundation
import NIOConcurrencyHelpers
import ServiceCore
import Synchronization

/// One running instance of a service, as the registry knows it.
public struct ServiceInstance: Codable, Sendable, Hashable {
    /// Unique per instance (chosen by the instance, so a re-registration after a registry restart keeps it).
    public var id: String
    /// The service's name (`order`).
    public var name: String
    /// Base URL, `http://host:port`.
    public var url: String
    /// What the registry polls to check the instance (default `<url>/health/live`).
    public var healthCheck: String
    public var registeredAt: String
    public var lastHeartbeat: String

    public init(id: String, name: String, url: String, healthCheck: String, registeredAt: String, lastHeartbeat: String) {
        self.id = id
        self.name = name
        self.url = url
        self.healthCheck = healthCheck
        self.registeredAt = registeredAt
        self.lastHeartbeat = lastHeartbeat
    }
}

/// Body of `POST /register` (the guide's `{name, url, healthCheck}`, plus the instance's own id).
public struct ServiceRegistration: Codable, Sendable {
    public var name: String
    public var url: String
    public var healthCheck: String?
    public var instanceId: String?

    public init(name: String, url: String, healthCheck: String? = nil, instanceId: String? = nil) {
        self.name = name
        self.url = url
        self.healthCheck = healthCheck
        self.instanceId = instanceId
    }

    /// Checks the fields: a service name, an absolute `http://host:port` URL without credentials, path or query, a
    /// health-check URL on the same host, and an id of safe characters.
    public func validated() throws -> ServiceRegistration {
        var details: [APIError.FieldError] = []
        if !Self.isName(name) {
            details.append(.init(field: "name", message: "\"name\" must be 1-63 lowercase letters, digits or dashes, starting with a letter"))
        }
        let base = Self.baseURL(url)
        if base == nil {
            details.append(.init(field: "url", message: "\"url\" must be an absolute http://host:port URL without credentials, path or query"))
        }
        if let healthCheck {
            let check = URLComponents(string: healthCheck)
            if check?.scheme.map({ ["http", "https"].contains($0) }) != true || check?.host == nil || check?.user != nil
                || (base != nil && check?.host != base?.host)
            {
                details.append(.init(field: "healthCheck", message: "\"healthCheck\" must be an http(s) URL on the instance's host"))
            }
        }
        if let instanceId, !Self.isInstanceID(instanceId) {
            details.append(.init(field: "instanceId", message: "\"instanceId\" must be 1-100 letters, digits, '-', '_' or '.'"))
        }
        guard details.isEmpty else { throw APIError.validation(details) }
        return self
    }

    static func isName(_ name: String) -> Bool {
        guard let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), name.utf8.count <= 63 else { return false }
        return name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }

    static func isInstanceID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 100
            && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 || $0 == 46 }
    }

    /// `url`'s parts when it is `http://host:port` (optionally with a trailing `/`); the gateway and the clients reach
    /// instances over plain HTTP inside the system, so an `https` registration would be silently downgraded.
    static func baseURL(_ url: String) -> URLComponents? {
        guard let components = URLComponents(string: url), components.scheme == "http",
            let host = components.host, !host.isEmpty, components.port != nil, components.user == nil, components.password == nil,
            components.path.isEmpty || components.path == "/", components.query == nil, components.fragment == nil
        else { return nil }
        return components
    }
}

/// The registry's state, pure: instances by id with their last heartbeat and failed health checks. Every change takes
/// the current instant, so expiry is tested without sleeping.
public struct ServiceRegistryMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    struct Entry: Sendable {
        var instance: ServiceInstance
        var lastSeen: Instant
        var failedChecks: Int
        /// When it last registered or renewed here (not through ``reconcile(with:readAt:now:)``).
        var renewedHere: Instant?
    }

    /// The registration of an id that belongs to another service.
    public struct Conflict: Error {}

    private var entries: [String: Entry] = [:]
    /// An instance whose last heartbeat is older than this is evicted.
    public let ttl: Duration
    /// Changes with every registration, eviction or removal (for caches of the instance lists).
    public private(set) var version = 0

    public init(ttl: Duration) {
        self.ttl = ttl
    }

    /// Adds or renews the instance `registration` describes (already validated); its id is kept or generated.
    public mutating func register(_ registration: ServiceRegistration, now: Instant, timestamp: String) throws -> ServiceInstance {
        let url = registration.url.hasSuffix("/") ? String(registration.url.dropLast()) : registration.url
        let id = registration.instanceId ?? "\(registration.name)-\(UUID().uuidString.prefix(8).lowercased())"
        if let existing = entries[id], existing.instance.name != registration.name { throw Conflict() }
        let instance = ServiceInstance(
            id: id, name: registration.name, url: url, healthCheck: registration.healthCheck ?? url + "/health/live",
            registeredAt: entries[id]?.instance.registeredAt ?? timestamp, lastHeartbeat: timestamp
        )
        if entries[id]?.instance != nil, entries[id]?.instance.url == instance.url, entries[id]?.instance.healthCheck == instance.healthCheck {
            entries[id] = Entry(instance: instance, lastSeen: now, failedChecks: 0, renewedHere: now)
        } else {
            entries[id] = Entry(instance: instance, lastSeen: now, failedChecks: 0, renewedHere: now)
            version += 1
        }
        return instance
    }

    /// Records a heartbeat of `id`; nil when the registry does not know it (the instance should register again).
    public mutating func heartbeat(_ id: String, now: Instant, timestamp: String) -> ServiceInstance? {
        guard entries[id] != nil else { return nil }
        entries[id]!.lastSeen = now
        entries[id]!.renewedHere = now
        entries[id]!.instance.lastHeartbeat = timestamp
        return entries[id]!.instance
    }

    /// Removes `id`; returns what it was.
    public mutating func deregister(_ id: String) -> ServiceInstance? {
        guard let entry = entries.removeValue(forKey: id) else { return nil }
        version += 1
        return entry.instance
    }

    /// Removes every instance whose last heartbeat is `ttl` or more before `now`.
    public mutating func evictExpired(now: Instant) -> [ServiceInstance] {
        let expired = entries.values.filter { $0.lastSeen.duration(to: now) >= ttl }.map(\.instance)
        for instance in expired { entries[instance.id] = nil }
        if !expired.isEmpty { version += 1 }
        return expired
    }

    /// Records an active health check of `id`; after `threshold` failures in a row the instance is evicted and returned.
    public mutating func recordCheck(_ id: String, healthy: Bool, threshold: Int) -> ServiceInstance? {
        guard var entry = entries[id] else { return nil }
        entry.failedChecks = healthy ? 0 : entry.failedChecks + 1
        guard entry.failedChecks >= threshold else {
            entries[id] = entry
            return nil
        }
        entries[id] = nil
        version += 1
        return entry.instance
    }

    public func instance(_ id: String) -> ServiceInstance? { entries[id]?.instance }

    /// The instances of service `name`, oldest registration first (ties by id).
    public func instances(of name: String) -> [ServiceInstance] {
        entries.values.map(\.instance).filter { $0.name == name }.sorted { ($0.registeredAt, $0.id) < ($1.registeredAt, $1.id) }
    }

    /// Makes the registry hold what a registry shared with other processes holds (`shared`): those instances are added
    /// or renewed; one not among them is removed unless it was registered or renewed here at `recentSince` or later (its
    /// write to the shared registry may not have been read yet). Returns what was removed.
    public mutating func reconcile(with shared: [ServiceInstance], recentSince: Instant, now: Instant) -> [ServiceInstance] {
        var changed = false
        for instance in shared {
            if let entry = entries[instance.id], entry.instance.name == instance.name, entry.instance.url == instance.url,
                entry.instance.healthCheck == instance.healthCheck
            {
                entries[instance.id]!.lastSeen = now
                entries[instance.id]!.instance.lastHeartbeat = max(entry.instance.lastHeartbeat, instance.lastHeartbeat)
            } else {
                entries[instance.id] = Entry(instance: instance, lastSeen: now, failedChecks: 0, renewedHere: nil)
                changed = true
            }
        }
        let ids = Set(shared.map(\.id))
        let gone = entries.values.filter { entry in
            !ids.contains(entry.instance.id) && !(entry.renewedHere.map { $0 >= recentSince } ?? false)
        }.map(\.instance)
        for instance in gone { entries[instance.id] = nil }
        if changed || !gone.isEmpty { version += 1 }
        return gone
    }

    /// Every instance by service name.
    public var all: [String: [ServiceInstance]] {
        Dictionary(grouping: entries.values.map(\.instance), by: \.name).mapValues {
            $0.sorted { ($0.registeredAt, $0.id) < ($1.registeredAt, $1.id) }
        }
    }
}

/// The service registry a process hosts (the gateway, as in the guide): thread-safe, on the continuous clock.
public final class ServiceRegistry: Sendable {
    let machine: NIOLockedValueBox<ServiceRegistryMachine<ContinuousClock.Instant>>
    /// The machine's version, readable without the lock (the gateway checks it on every request).
    let changes = Atomic<Int>(0)
    /// How often instances should send a heartbeat (a third of the TTL).
    public let heartbeatInterval: Duration
    public let ttl: Duration

    /// Told of instances removed here (unregistered, expired, failing their checks), e.g. to remove them from a
    /// registry shared with other gateways; not of those ``reconcile(with:recentSince:)`` removes.
    private let removalHandler = NIOLockedValueBox<(@Sendable ([ServiceInstance]) -> Void)?>(nil)

    public init(ttl: Duration = .seconds(15)) {
        self.machine = NIOLockedValueBox(ServiceRegistryMachine(ttl: ttl))
        self.heartbeatInterval = ttl / 3
        self.ttl = ttl
    }

    /// Applies `change` and publishes the new version.
    private func change<T>(_ change: (inout ServiceRegistryMachine<ContinuousClock.Instant>) throws -> T) rethrows -> T {
        try machine.withLockedValue { machine in
            let result = try change(&machine)
            changes.store(machine.version, ordering: .releasing)
            return result
        }
    }

    public func register(_ registration: ServiceRegistration) throws -> ServiceInstance {
        try change { try $0.register(registration, now: .now, timestamp: Timestamp.now()) }
    }

    public func heartbeat(_ id: String) -> ServiceInstance? {
        change { $0.heartbeat(id, now: .now, timestamp: Timestamp.now()) }
    }

    public func deregister(_ id: String) -> ServiceInstance? {
        removed(change { $0.deregister(id) }.map { [$0] } ?? []).first
    }

    public func evictExpired() -> [ServiceInstance] {
        removed(change { $0.evictExpired(now: .now) })
    }

    public func recordCheck(_ id: String, healthy: Bool, threshold: Int) -> ServiceInstance? {
        removed(change { $0.recordCheck(id, healthy: healthy, threshold: threshold) }.map { [$0] } ?? []).first
    }

    /// See ``ServiceRegistryMachine/reconcile(with:recentSince:now:)``.
    public func reconcile(with shared: [ServiceInstance], recentSince: ContinuousClock.Instant) -> [ServiceInstance] {
        change { $0.reconcile(with: shared, recentSince: recentSince, now: .now) }
    }

    /// Calls `handler` with the instances removed here from now on (see ``removalHandler``).
    public func onRemoval(_ handler: @escaping @Sendable ([ServiceInstance]) -> Void) {
        removalHandler.withLockedValue { $0 = handler }
    }

    private func removed(_ instances: [ServiceInstance]) -> [ServiceInstance] {
        if !instances.isEmpty, let handler = removalHandler.withLockedValue({ $0 }) { handler(instances) }
        return instances
    }

    public func instance(_ id: String) -> ServiceInstance? { machine.withLockedValue { $0.instance(id) } }

    public func instances(of name: String) -> [ServiceInstance] { machine.withLockedValue { $0.instances(of: name) } }

    public var all: [String: [ServiceInstance]] { machine.withLockedValue { $0.all } }

    /// Changes with every change of the instance lists.
    public var version: Int { changes.load(ordering: .acquiring) }
}
