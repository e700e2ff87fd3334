import NIOCore

/// Limits and timeouts of a ``ProxyServer``.
public struct ProxyServerConfiguration: Sendable {
    /// How the server names itself in its log lines.
    public var name = "Gateway"
    /// The `Server` header of forwarded responses, in place of the upstream's (which would name an internal service);
    /// nil removes it.
    public var serverName: String? = "shop-gateway"
    public var host: String
    public var port: Int
    /// Largest request body forwarded; larger ones are answered 413.
    public var maxBodyBytes: Int
    /// How long to wait for an upstream TCP connection.
    public var connectTimeout: TimeAmount
    /// How long to wait for an upstream's complete response once the request is sent.
    public var responseTimeout: TimeAmount
    /// Idle keep-alive connections kept per upstream per event loop.
    public var maxIdleConnectionsPerUpstream: Int
    /// A client connection that sends nothing for this long while idle or mid-upload is closed.
    public var idleTimeout: TimeAmount

    public init(
        host: String = "127.0.0.1",
        port: Int,
        maxBodyBytes: Int = 1 << 20,
        connectTimeout: TimeAmount = .seconds(2),
        responseTimeout: TimeAmount = .seconds(30),
        maxIdleConnectionsPerUpstream: Int = 64,
        idleTimeout: TimeAmount = .seconds(60)
    ) {
        self.idleTimeout = idleTimeout
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.maxIdleConnectionsPerUpstream = maxIdleConnectionsPerUpstream
    }
}
