import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import ServiceCore
import ServiceHTTP
import ServiceTesting
import ShopContracts
import Testing
import UserService

@Suite struct UserServiceTests {
    static let jane = #"{"email":"Jane@Example.com","name":"Jane Doe","password":"Secret123","profile":{"firstName":"Jane","phone":"+1 555-0100"}}"#

    func signUp(_ client: some TestClientProtocol, _ body: String = jane) async throws -> UserDTO {
        try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(body)) { response async throws in
            #expect(response.status == .created)
            return try response.json(UserDTO.self)
        }
    }

    @Test(arguments: TestDatabase.available)
    func signupStoresAUserWithoutEverReturningTheHash(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await buildUserService(harness.user()).test(.router) { client in
                try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(Self.jane)) { response async throws in
                    #expect(response.status == .created)
                    let text = String(buffer: response.body)
                    #expect(!text.contains("password") && !text.contains("$2b$") && !text.contains("Secret123"))
                    let user = try response.json(UserDTO.self)
                    #expect(user.email == "jane@example.com")
                    #expect(user.role == "user")
                    #expect(user.profile == UserDTO.Profile(firstName: "Jane", lastName: nil, phone: "+1 555-0100"))
                    #expect(response.headers[.location] == "/users/\(user.id)")
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func duplicateEmailIs409CaseInsensitively(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await buildUserService(harness.user()).test(.router) { client in
                _ = try await signUp(client)
                let again = #"{"email":"JANE@example.com","name":"Other","password":"Secret123"}"#
                try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(again)) { response async throws in
                    #expect(response.status == .conflict)
                    #expect(response.errorMessage == "Email already registered")
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func badSignupsAre400WithDetailsAndWriteNothing(_ engine: TestDatabase) async throws {
        let cases: [(String, Set<String>)] = [
            (#"{"email":"not-an-email","name":"Jane","password":"Secret123"}"#, ["email"]),
            (#"{"email":"jane@example.com","name":"J","password":"Secret123"}"#, ["name"]),
            (#"{"email":"jane@example.com","name":"Jane","password":"secret12"}"#, ["password"]),
            (#"{"email":"jane@example.com","name":"Jane","password":"Sh0rt"}"#, ["password"]),
            (#"{"email":"jane@example.com","name":"Jane"}"#, ["password"]),
            (#"{"email":42,"name":["x"],"password":true}"#, ["email", "name", "password"]),
            (#"{"email":"jane@example.com","name":"Jane","password":"Secret123","role":"admin"}"#, ["role"]),
            (#"{"email":"jane@example.com","name":"Jane","password":"Secret123","profile":{"phone":"call me"}}"#, ["profile.phone"]),
            (#"{"email":"jane@example.com","name":"Jane","password":"Secret123","profile":"x"}"#, ["profile"]),
        ]
        try await Harness.with(engine) { harness in
            try await buildUserService(harness.user()).test(.router) { client in
                for (body, fields) in cases {
                    try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(body)) { response async throws in
                        #expect(response.status == .badRequest, "\(body)")
                        let object = try response.object()
                        #expect(object["error"] as? String == "Validation failed")
                        let details = try #require(object["details"] as? [[String: String]])
                        #expect(Set(details.compactMap { $0["field"] }) == fields, "\(body)")
                    }
                }
                for body in ["{", "[]", "\"text\"", ""] {
                    try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(body)) { response async throws in
                        #expect(response.status == .badRequest, "\(body)")
                        #expect(response.errorMessage != nil)
                    }
                }
                let huge = #"{"email":"jane@example.com","name":""# + String(repeating: "a", count: 20_000) + #"","password":"Secret123"}"#
                try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(huge)) { response async throws in
                    #expect(response.status == .contentTooLarge)
                }
                // None of the rejected requests stored anything: the email is still free.
                _ = try await signUp(client, #"{"email":"jane@example.com","name":"Jane","password":"Secret123"}"#)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func aUserReadsAndUpdatesOnlyThemselves(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await buildUserService(harness.user()).test(.router) { client in
                let jane = try await signUp(client)
                let bob = try await signUp(client, #"{"email":"bob@example.com","name":"Bob","password":"Secret123"}"#)
                let janeToken = try await harness.keys.token(jane.id)
                let admin = try await harness.keys.token("admin-1", role: .admin)

                try await client.execute(uri: "/users/\(jane.id)", method: .get, headers: .bearer(janeToken)) { response async throws in
                    #expect(response.status == .ok)
                    #expect(try response.json(UserDTO.self) == jane)
                }
                try await client.execute(uri: "/users/\(bob.id)", method: .get, headers: .bearer(janeToken)) { response async throws in
                    #expect(response.status == .forbidden)
                    #expect(response.errorMessage == "Forbidden")
                }
                try await client.execute(uri: "/users/\(bob.id)", method: .get, headers: .bearer(admin)) { response async throws in
                    #expect(response.status == .ok)
                }
                try await client.execute(uri: "/users/unknown-id", method: .get, headers: .bearer(admin)) { response async throws in
                    #expect(response.status == .notFound)
                }
                let patch = #"{"name":"Jane Q. Doe","profile":{"lastName":"Doe"}}"#
                try await client.execute(uri: "/users/\(jane.id)", method: .patch, headers: .bearer(janeToken), body: .json(patch)) {
                    response async throws in
                    #expect(response.status == .ok)
                    let updated = try response.json(UserDTO.self)
                    #expect(updated.name == "Jane Q. Doe")
                    #expect(updated.profile?.lastName == "Doe")
                    #expect(updated.email == jane.email)
                }
                try await client.execute(uri: "/users/\(bob.id)", method: .patch, headers: .bearer(janeToken), body: .json(patch)) {
                    response async throws in
                    #expect(response.status == .forbidden)
                }
                for bad in [#"{}"#, #"{"email":"x@y.com"}"#, #"{"password":"weak"}"#, #"{"name":7}"#] {
                    try await client.execute(uri: "/users/\(jane.id)", method: .patch, headers: .bearer(janeToken), body: .json(bad)) {
                        response async throws in
                        #expect(response.status == .badRequest, "\(bad)")
                    }
                }
                try await client.execute(uri: "/users/\(bob.id)", method: .get, headers: .bearer(admin)) { response async throws in
                    #expect(try response.json(UserDTO.self).name == "Bob")
                }
            }
        }
    }

    @Test func missingAndInvalidTokensAre401() async throws {
        try await Harness.with(.sqlite) { harness in
            try await buildUserService(harness.user()).test(.router) { client in
                try await client.execute(uri: "/users/x", method: .get) { response async throws in
                    #expect(response.status == .unauthorized)
                    #expect(response.errorMessage == "Access denied")
                    #expect(response.headers[.wwwAuthenticate] == nil)
                }
                let expired = try await harness.keys.expiredToken("x")
                let foreign = try await TestKeys().token("x")
                for token in [expired, foreign, "garbage"] {
                    try await client.execute(uri: "/users/x", method: .get, headers: .bearer(token)) { response async throws in
                        #expect(response.status == .unauthorized)
                        #expect(response.headers[.wwwAuthenticate]?.contains("error=\"invalid_token\"") == true)
                    }
                }
            }
        }
    }

    @Test func credentialsAreCheckedForTheAuthService() async throws {
        try await Harness.with(.sqlite) { harness in
            let service = try await harness.keys.token("auth", role: .service, scopes: [Scope.credentialsVerify])
            let intruders = try await harness.keys.intruders(for: Scope.credentialsVerify)
            try await buildUserService(harness.user()).test(.router) { client in
                let jane = try await signUp(client)
                let verify = { (body: String) in
                    try await client.execute(uri: "/internal/credentials/verify", method: .post, headers: .json(bearer: service), body: .json(body)) {
                        $0
                    }
                }
                // Only the auth service's token (with its scope) gets an answer.
                for (what, token) in intruders {
                    let headers: HTTPFields = token.map { .json(bearer: $0) } ?? .json
                    let response = try await client.execute(
                        uri: "/internal/credentials/verify", method: .post, headers: headers,
                        body: .json(#"{"email":"jane@example.com","password":"Secret123"}"#)
                    ) { $0 }
                    #expect(response.status == (token == nil || what.contains("expired") ? .unauthorized : .forbidden), "\(what)")
                    #expect(!String(buffer: response.body).contains(jane.id), "\(what)")
                }
                let good = try await verify(#"{"email":"jane@example.com","password":"Secret123"}"#)
                #expect(good.status == .ok)
                #expect(try good.json(UserDTO.self).id == jane.id)
                #expect(try await verify(#"{"email":"jane@example.com","password":"Wrong1234"}"#).status == .unauthorized)
                #expect(try await verify(#"{"email":"nobody@example.com","password":"Secret123"}"#).status == .unauthorized)
                #expect(try await verify(#"{"email":"jane@example.com"}"#).status == .badRequest)
            }
        }
    }

    @Test func theAdminAccountIsCreatedOnceAtStart() async throws {
        try await Harness.with(.sqlite) { harness in
            let configuration = harness.user(adminPassword: "AdminPass1")
            let service = try await harness.keys.token("auth", role: .service, scopes: [Scope.credentialsVerify])
            try await buildUserService(configuration).test(.router) { client in
                try await client.execute(
                    uri: "/internal/credentials/verify", method: .post, headers: .json(bearer: service),
                    body: .json(#"{"email":"admin@shop.local","password":"AdminPass1"}"#)
                ) { response async throws in
                    #expect(response.status == .ok)
                    #expect(try response.json(UserDTO.self).role == "admin")
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func controlCharactersAreRefusedOnEveryEngine(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let service = try await harness.keys.token("auth", role: .service, scopes: [Scope.credentialsVerify])
            try await buildUserService(harness.user()).test(.router) { client in
                for body in [
                    #"{"email":"jane@example.com","name":"Ja\u0000ne","password":"Secret123"}"#,
                    #"{"email":"jane@example.com","name":"Jane","password":"\u0000Secret123"}"#,
                    #"{"email":"jane@example.com\u0007","name":"Jane","password":"Secret123"}"#,
                ] {
                    try await client.execute(uri: "/users", method: .post, headers: .json, body: .json(body)) { response async throws in
                        #expect(response.status == .badRequest, "\(body)")
                        #expect(String(buffer: response.body).contains("control characters"))
                    }
                }
                try await client.execute(
                    uri: "/internal/credentials/verify", method: .post, headers: .json(bearer: service),
                    body: .json(#"{"email":"\u0000","password":"x"}"#)
                ) { response async throws in
                    #expect(response.status == .badRequest)
                }
                // Passwords keep their spaces and count bytes: 72 bytes of multi-byte text is over bcrypt's limit.
                let long = String(repeating: "é", count: 40) + "Aa1"
                try await client.execute(
                    uri: "/users", method: .post, headers: .json,
                    body: .json(#"{"email":"jane@example.com","name":"Jane","password":"\#(long)"}"#)
                ) { response async throws in
                    #expect(response.status == .badRequest)
                }
                _ = try await signUp(client, #"{"email":"jane@example.com","name":"Jane","password":" Secret123 "}"#)
                try await client.execute(
                    uri: "/internal/credentials/verify", method: .post, headers: .json(bearer: service),
                    body: .json(#"{"email":"jane@example.com","password":"Secret123"}"#)
                ) { response async throws in
                    #expect(response.status == .unauthorized)
                }
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func aChangedPasswordIsTheOneThatWorks(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            try await buildUserService(harness.user()).test(.router) { client in
                let jane = try await signUp(client)
                let token = try await harness.keys.token(jane.id)
                // Two changes of different fields at once both survive.
                async let renamed = client.execute(
                    uri: "/users/\(jane.id)", method: .patch, headers: .bearer(token), body: .json(#"{"name":"Jane Renamed"}"#)
                ) { $0.status }
                async let repassworded = client.execute(
                    uri: "/users/\(jane.id)", method: .patch, headers: .bearer(token), body: .json(#"{"password":"Newer1234"}"#)
                ) { $0.status }
                #expect(try await renamed == .ok)
                #expect(try await repassworded == .ok)
                let service = try await harness.keys.token("auth", role: .service, scopes: [Scope.credentialsVerify])
                let verify = { (password: String) in
                    try await client.execute(
                        uri: "/internal/credentials/verify", method: .post, headers: .json(bearer: service),
                        body: .json(#"{"email":"jane@example.com","password":"\#(password)"}"#)
                    ) { $0 }
                }
                let new = try await verify("Newer1234")
                #expect(new.status == .ok)
                #expect(try new.json(UserDTO.self).name == "Jane Renamed")
                #expect(try await verify("Secret123").status == .unauthorized)
            }
        }
    }

    @Test func userOrdersAreForTheUserAndFailCleanlyWhenOrdersAreDown() async throws {
        try await Harness.with(.sqlite) { harness in
            try await buildUserService(harness.user(orderURL: "http://127.0.0.1:9")).test(.router) { client in
                let jane = try await signUp(client)
                let bob = try await signUp(client, #"{"email":"bob@example.com","name":"Bob","password":"Secret123"}"#)
                let token = try await harness.keys.token(jane.id)
                try await client.execute(uri: "/users/\(bob.id)/orders", method: .get, headers: .bearer(token)) { response async throws in
                    #expect(response.status == .forbidden)
                }
                try await client.execute(uri: "/users/\(jane.id)/orders", method: .get, headers: .bearer(token)) { response async throws in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.errorMessage == "order service unavailable")
                }
                try await client.execute(uri: "/health", method: .get) { response async throws in
                    #expect(response.status == .ok)
                    let checks = try #require(try response.object()["checks"] as? [String: [String: Any]])
                    #expect(checks["database"]?["status"] as? String == "healthy")
                }
            }
        }
    }
}
