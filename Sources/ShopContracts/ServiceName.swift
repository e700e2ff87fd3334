/// The shop's services, in the order of the design's table; a service's local port is the port base plus its offset.
public enum ServiceName: String, CaseIterable, Sendable, Codable {
    case gateway
    case user
    case order
    case payment
    case auth
    case inventory
    case notification

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
        }
    }

    /// The port this service uses locally with `portBase` (default 3000).
    public func port(base: Int = 3000) -> Int { base + portOffset }

    /// The environment variable that overrides where this service is reached, e.g. `USER_SERVICE_URL`.
    public var urlVariable: String { "\(rawValue.uppercased())_SERVICE_URL" }

    /// The services built so far, which `shop up` starts.
    public static let implemented: [ServiceName] = [.auth, .user, .inventory, .order, .payment, .notification, .gateway]
}
