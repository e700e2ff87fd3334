import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceCore

/// The request context every service uses: the core storage plus the correlation id and the caller's identity.
public struct ServiceRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Correlation id of the request (from `x-correlation-id`, or generated); set by ``CorrelationMiddleware``.
    public var correlationID: String
    /// The verified caller, set by an authentication middleware; nil on public routes.
    public var identity: Identity?
    /// Body size limit, from the service settings.
    public var maxUploadSize: Int
    /// The connection's peer (the gateway, for requests it forwards).
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.correlationID = ""
        self.identity = nil
        self.maxUploadSize = ServiceRequestContext.defaultMaxUploadSize
        self.remoteAddress = source.channel.remoteAddress
    }

    /// JSON responses with sorted keys and ISO 8601 dates, so output is stable and diffable.
    public var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    /// Upload limit used when the application does not set one.
    public static let defaultMaxUploadSize = 1 << 20

    /// The caller's identity, or a 401 when the route was reached without one.
    public func requireIdentity() throws -> Identity {
        guard let identity else { throw APIError.unauthorized() }
        return identity
    }
}
