/// A user as other services and clients see it: never a password or a hash.
public struct UserDTO: Codable, Sendable, Equatable {
    /// Optional profile fields from the guide's `createUser` schema.
    public struct Profile: Codable, Sendable, Equatable {
        public var firstName: String?
        public var lastName: String?
        public var phone: String?
        public init(firstName: String? = nil, lastName: String? = nil, phone: String? = nil) {
            self.firstName = firstName
            self.lastName = lastName
            self.phone = phone
        }
    }

    public var id: String
    public var email: String
    public var name: String
    public var role: String
    public var profile: Profile?
    public var createdAt: String
    public var updatedAt: String

    public init(id: String, email: String, name: String, role: String, profile: Profile?, createdAt: String, updatedAt: String) {
        self.id = id
        self.email = email
        self.name = name
        self.role = role
        self.profile = profile
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// Body of the user service's internal `POST /internal/credentials/verify`, called by the auth service at login.
public struct CredentialCheck: Codable, Sendable {
    public var email: String
    public var password: String
    public init(email: String, password: String) {
        self.email = email
        self.password = password
    }
}

/// `{user, orders}` from `GET /users/:id/orders`.
public struct UserWithOrders: Codable, Sendable {
    public var user: UserDTO
    public var orders: [OrderDTO]
    public init(user: UserDTO, orders: [OrderDTO]) {
        self.user = user
        self.orders = orders
    }
}

/// `{token, expiresIn}` from `POST /auth/login`.
public struct TokenResponse: Codable, Sendable {
    public var token: String
    public var expiresIn: Int
    public init(token: String, expiresIn: Int) {
        self.token = token
        self.expiresIn = expiresIn
    }
}
