import ServiceCore
import ServiceHTTP
import ShopContracts

/// A stored user, including the password hash that never leaves the service.
struct User: Sendable, Equatable {
    var id: String
    var email: String
    var name: String
    var passwordHash: String
    var role: Identity.Role
    var profile: UserDTO.Profile?
    var createdAt: String
    var updatedAt: String

    /// The public form.
    var dto: UserDTO {
        UserDTO(id: id, email: email, name: name, role: role.rawValue, profile: profile, createdAt: createdAt, updatedAt: updatedAt)
    }
}

/// A validated signup: the guide's `createUser` schema.
struct NewUser: Sendable {
    var email: String
    var name: String
    var password: String
    var profile: UserDTO.Profile?

    init(body: JSONValue) throws {
        self = try Validation.validate(body) { body in
            body.allowOnly(["email", "name", "password", "profile"])
            let email = body.string("email", maxLength: 254, rule: Rules.email)
            let name = body.string("name", minLength: 2, maxLength: 100)
            let password = UserFields.password(body, required: true)
            let profile = UserFields.profile(body)
            guard let email, let name, let password else { return nil }
            return NewUser(email: email.lowercased(), name: name, password: password, profile: profile ?? nil)
        }
    }

    init(email: String, name: String, password: String, profile: UserDTO.Profile?) {
        self.email = email
        self.name = name
        self.password = password
        self.profile = profile
    }
}

/// A validated `PATCH /users/:id`: any of name, password, profile; at least one.
struct UserChanges: Sendable {
    var name: String?
    var password: String?
    var profile: UserDTO.Profile??

    init(body: JSONValue) throws {
        self = try Validation.validate(body) { body in
            body.allowOnly(["name", "password", "profile"])
            let changes = UserChanges(
                name: body.string("name", required: false, minLength: 2, maxLength: 100),
                password: UserFields.password(body, required: false),
                profile: UserFields.profile(body)
            )
            if body.isValid, changes.name == nil, changes.password == nil, changes.profile == nil {
                body.fail("body", "must contain at least one of name, password, profile")
            }
            return changes
        }
    }

    init(name: String?, password: String?, profile: UserDTO.Profile??) {
        self.name = name
        self.password = password
        self.profile = profile
    }
}

/// Field rules shared by signup and update.
enum UserFields {
    static func password(_ body: Validation.ObjectReader, required: Bool) -> String? {
        // Passwords are neither trimmed nor echoed; bcrypt reads at most 72 bytes, so longer ones are refused.
        body.string("password", required: required, minLength: 8, maxBytes: 72, trim: false, rule: Rules.strongPassword)
    }

    /// nil when absent; `.some(profile)` when present and valid.
    static func profile(_ body: Validation.ObjectReader) -> UserDTO.Profile?? {
        guard let profile = body.object("profile", required: false) else { return nil }
        profile.allowOnly(["firstName", "lastName", "phone"])
        return .some(
            UserDTO.Profile(
                firstName: profile.string("firstName", required: false, maxLength: 50),
                lastName: profile.string("lastName", required: false, maxLength: 50),
                phone: profile.string("phone", required: false, maxLength: 30, rule: Rules.phone)
            )
        )
    }
}
