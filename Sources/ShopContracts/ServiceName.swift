/// The shop's services, in the order of the design's table; a service's local port is the port base plus its offset.
public enum ServiceName: String, CaseIterable, Sendable, Codable {
    case gateway
    case user
    case order
    case payment
    case auth
    case inventory
    case notification
    /// The sandbox payment provider: outside the shop (not behind the gateway, not in the registry), reached by the
    /// payment service as it would reach a real provider.
    case paymentProvider = "payment-provider"

    /// Offset from the port base (gateway 3000, user 3001, …).
    public var portOffset: Int {
        switch self {
        case .gateway: 0
        case .user: 1
        case .order: 2
        case .payment: 3
        case .auth: 4
        case .inventory: 5
        case .notification: 6
        case .paymentProvider: 7
        }
    }

    /// The port this service uses locally with `portBase` (default 3000).
    public func port(base: Int = 3000) -> Int { base + portOffset }

    /// The environment variable that overrides where this service is reached, e.g. `USER_SERVICE_URL`.
    public var urlVariable: String { self == .paymentProvider ? "PAYMENT_PROVIDER_URL" : "\(rawValue.uppercased())_SERVICE_URL" }

    /// Whether this is one of the shop's own services (behind the gateway, in the registry, with a service identity), as
    /// opposed to an outside system the shop runs a sandbox of.
    public var isShopService: Bool { self != .paymentProvider }

    /// The shop's own services.
    public static let shopServices: [ServiceName] = allCases.filter(\.isShopService)

    /// The services built so far, which `shop up` starts.
    public static let implemented: [ServiceName] = [.paymentProvider, .auth, .user, .inventory, .order, .payment, .notification, .gateway]
}
