/// The authenticated caller of a request, as established from a verified token.
public struct Identity: Sendable, Equatable, Codable {
    /// Roles a caller can hold.
    public enum Role: String, Sendable, Codable {
        case user
        case admin
        case service
    }

    /// Subject: a user id, or a service id for service tokens.
    public var subject: String
    public var role: Role
    public var email: String?
    /// The raw bearer token, kept so a service can act on behalf of the caller downstream.
    public var token: String
    /// What a service token allows (e.g. `orders:read`); empty for users.
    public var scopes: Set<String>

    public init(subject: String, role: Role, email: String? = nil, token: String, scopes: Set<String> = []) {
        self.subject = subject
        self.role = role
        self.email = email
        self.token = token
        self.scopes = scopes
    }

    /// True for a service identity holding `scope`.
    public func isService(with scope: String) -> Bool {
        role == .service && scopes.contains(scope)
    }

    /// True when this identity may act on resources owned by `ownerID`.
    public func canAccess(ownerID: String) -> Bool {
        self.role == .admin || self.subject == ownerID
    }
}
