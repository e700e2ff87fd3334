import AuthService
import Foundation
import HummingbirdTesting
import JWTKit
import ServiceAuth
import ServiceCore
import ServiceTesting
import ShopContracts
import Testing
import UserService

@Suite struct AuthServiceTests {
    @Test(arguments: TestDatabase.available)
    func loginIssuesATokenTheJWKSVerifies(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let user = harness.user(adminPassword: "AdminPass1")
            try await RunningService.with([{ var c = user; c.settings.onServerRunning = $0; return try await buildUserService(c) }]) { ports in
                try await buildAuthService(harness.auth(userURL: "http://127.0.0.1:\(ports[0])")).test(.router) { client in
                    let token = try await client.execute(
                        uri: "/auth/login", method: .post, headers: .json, body: .json(#"{"email":"ADMIN@shop.local","password":"AdminPass1"}"#)
                    ) { response async throws in
                        #expect(response.status == .ok)
                        let token = try response.json(TokenResponse.self)
                        #expect(token.expiresIn == 3600)
                        return token.token
                    }
                    let jwks = try await client.execute(uri: "/.well-known/jwks.json", method: .get) { try $0.json(JWKS.self) }
                    let identity = try await TokenVerifierFactory.verify(token, jwks: jwks)
                    #expect(identity.role == .admin)
                    #expect(identity.email == "admin@shop.local")
                }
            }
        }
    }

    @Test func badLoginsAre401Or400AndNeverSayWhichPartWasWrong() async throws {
        try await Harness.with(.sqlite) { harness in
            let user = harness.user(adminPassword: "AdminPass1")
            try await RunningService.with([{ var c = user; c.settings.onServerRunning = $0; return try await buildUserService(c) }]) { ports in
                try await buildAuthService(harness.auth(userURL: "http://127.0.0.1:\(ports[0])")).test(.router) { client in
                    for body in [#"{"email":"admin@shop.local","password":"Wrong1234"}"#, #"{"email":"nobody@shop.local","password":"AdminPass1"}"#] {
                        try await client.execute(uri: "/auth/login", method: .post, headers: .json, body: .json(body)) { response async throws in
                            #expect(response.status == .unauthorized)
                            #expect(response.errorMessage == "Invalid credentials")
                        }
                    }
                    for body in ["{", #"{"email":"admin@shop.local"}"#, #"{"email":1,"password":2}"#, #"{"email":"a","password":"b","x":1}"#] {
                        try await client.execute(uri: "/auth/login", method: .post, headers: .json, body: .json(body)) { response async throws in
                            #expect(response.status == .badRequest, "\(body)")
                        }
                    }
                }
            }
        }
    }

    @Test func loginIs503WhenTheUserServiceIsDown() async throws {
        try await Harness.with(.sqlite) { harness in
            try await buildAuthService(harness.auth(userURL: "http://127.0.0.1:9")).test(.router) { client in
                try await client.execute(
                    uri: "/auth/login", method: .post, headers: .json, body: .json(#"{"email":"a@b.co","password":"Secret123"}"#)
                ) { response async throws in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.errorMessage == "user service unavailable")
                }
            }
        }
    }
}

/// Verifies a token against a published JWKS, as any service does.
enum TokenVerifierFactory {
    static func verify(_ token: String, jwks: JWKS) async throws -> Identity {
        try await ServiceAuth.TokenVerifier(jwks: jwks, logger: .init(label: "t")).verify(token)
    }
}
