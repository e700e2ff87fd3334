import Foundation
import NIOCore
import NIOHTTP1
import ServiceAuth
import ServiceCore
import ServiceDiscovery
import ServiceHTTP
import ServiceProxy
import ServiceResilience
import ShopContracts

/// The guide's registry API, hosted by the gateway:
///
/// - `POST /register` `{name, url, healthCheck?, instanceId?}` → 201 `{instance, heartbeatIntervalMs, ttlMs}`
/// - `PUT /register/:id` (heartbeat) → 200 `{instance}`, 404 when the registry forgot it (register again)
/// - `DELETE /register/:id` (unregister) → 204
/// - `GET /services` → `{services: {name: [instance]}}`; `GET /services/:name` (discover) → `{name, instances}`
///
/// Every call needs a token: a service token to register, renew or remove *its own* service's instances (an admin may
/// remove any), a service or admin token to read.
struct RegistryAPI: Sendable {
    let registry: ServiceRegistry
    let verifier: TokenVerifier
    /// The registry shared with other gateways, if any: registrations and heartbeats received here are written there.
    var mirror: RegistryMirror? = nil

    static func handles(_ path: Substring) -> Bool {
        GatewayRouter.matches(path, prefix: "/register") || GatewayRouter.matches(path, prefix: "/services")
    }

    func route(_ head: HTTPRequestHead, path: Substring) -> ProxyRoute {
        let token = BearerToken.extract(head.headers.first(name: "authorization"))
        let method = head.method
        let segments = path.split(separator: "/").map(String.init)
        return .decided(
            .handle { [self] body in
                do {
                    guard let token else { throw APIError.unauthorized() }
                    let identity: Identity
                    do {
                        identity = try await verifier.verify(token)
                    } catch is TokenVerifier.Failure {
                        throw APIError.invalidToken()
                    } catch {
                        throw APIError.unavailable("Token keys unavailable")
                    }
                    let response = try handle(method: method, segments: segments, body: body, caller: identity)
                    // A registration or heartbeat accepted here goes to the shared registry before the answer.
                    if let mirror, method == .POST || method == .PUT, response.status == .created || response.status == .ok,
                        let instance = try? JSONDecoder().decode(InstanceAnswer.self, from: response.body).instance
                    {
                        await mirror.put(instance)
                    }
                    return response
                } catch let error as APIError {
                    return Self.response(error)
                } catch {
                    return Self.response(APIError(.internalServerError, "Internal server error"))
                }
            }
        )
    }

    /// The part of a registry answer the mirror needs.
    struct InstanceAnswer: Decodable {
        var instance: ServiceInstance
    }

    func handle(method: HTTPMethod, segments: [String], body: ByteBuffer, caller: Identity) throws -> ProxyResponse {
        switch (method, segments.count) {
        case (.POST, 1) where segments[0] == "register":
            let registration: ServiceRegistration
            do {
                registration = try JSONDecoder().decode(ServiceRegistration.self, from: body)
            } catch {
                throw APIError(.badRequest, "Invalid JSON body: expected {name, url, healthCheck?, instanceId?}")
            }
            let valid = try registration.validated()
            try requireSelf(caller, service: valid.name)
            let instance: ServiceInstance
            do {
                instance = try registry.register(valid)
            } catch {
                throw APIError(.conflict, "Instance id \(valid.instanceId ?? "") belongs to another service")
            }
            let answer = RegistrationAnswer(
                instance: instance, heartbeatIntervalMs: Int(registry.heartbeatInterval.wholeMilliseconds), ttlMs: Int(registry.ttl.wholeMilliseconds)
            )
            return try Self.json(.created, answer)
        case (.PUT, 2) where segments[0] == "register":
            guard let known = registry.instance(segments[1]) else { throw APIError.notFound("Instance \(segments[1]) is not registered") }
            try requireSelf(caller, service: known.name)
            guard let renewed = registry.heartbeat(segments[1]) else { throw APIError.notFound("Instance \(segments[1]) is not registered") }
            return try Self.json(.ok, ["instance": renewed])
        case (.DELETE, 2) where segments[0] == "register":
            guard let known = registry.instance(segments[1]) else { throw APIError.notFound("Instance \(segments[1]) is not registered") }
            if caller.role != .admin { try requireSelf(caller, service: known.name) }
            _ = registry.deregister(segments[1])
            return ProxyResponse(status: .noContent, body: ByteBuffer())
        case (.GET, 1) where segments[0] == "services":
            try requireReader(caller)
            return try Self.json(.ok, ["services": registry.all])
        case (.GET, 2) where segments[0] == "services":
            try requireReader(caller)
            let instances = registry.instances(of: segments[1])
            guard !instances.isEmpty else { throw APIError.notFound("Service \(segments[1]) not found") }
            return try Self.json(.ok, DiscoveryAnswer(name: segments[1], instances: instances))
        default:
            throw APIError(.notFound, "Not found")
        }
    }

    /// Only the service itself may register (or renew) instances under its name.
    func requireSelf(_ caller: Identity, service: String) throws {
        guard caller.role == .service else { throw APIError.forbidden("Only a service token may register instances") }
        guard caller.isService(with: Scope.registryRegister) else {
            throw APIError.forbidden("Registering needs a service token with scope \(Scope.registryRegister)")
        }
        guard caller.subject == service else { throw APIError.forbidden("A service may only register its own instances") }
    }

    func requireReader(_ caller: Identity) throws {
        guard caller.role == .service || caller.role == .admin else {
            throw APIError.forbidden("The registry is readable by services and admins only")
        }
    }

    static func json(_ status: HTTPResponseStatus, _ value: some Encodable) throws -> ProxyResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ProxyResponse.json(status, String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func response(_ error: APIError) -> ProxyResponse {
        var headers = HTTPHeaders()
        for field in error.headers { headers.add(name: field.name.canonicalName, value: field.value) }
        headers.replaceOrAdd(name: "content-type", value: "application/json; charset=utf-8")
        return ProxyResponse(status: HTTPResponseStatus(statusCode: Int(error.status.code)), headers: headers, body: error.body)
    }
}
