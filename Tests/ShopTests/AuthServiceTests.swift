import Foundation
import HummingbirdTesting
import JWTKit
import ServiceAuth
import ServiceCore
import ServiceTesting
import ShopContracts
import Testing
import UserService

@testable import AuthService

@Suite struct AuthServiceTests {
    @Test(arguments: TestDatabase.available)
    func loginIssuesATokenTheJWKSVerifies(_ engine: TestDatabase) async throws {
        try await Harness.with(engine) { harness in
            let user = harness.user(adminPassword: "AdminPass1")
            try await RunningService.with([
                {
                    var c = user; c.settings.onServerRunning = $0; return try await buildUserService(c)
                }
            ]) { ports in
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
            try await RunningService.with([
                {
                    var c = user; c.settings.onServerRunning = $0; return try await buildUserService(c)
                }
            ]) { ports in
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

    /// The key id a token was signed under (its header's `kid`).
    static func keyID(of token: String) throws -> String {
        let header = try #require(token.split(separator: ".").first)
        var text = header.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        let object = try JSONSerialization.jsonObject(with: try #require(Data(base64Encoded: text))) as? [String: Any]
        return try #require(object?["kid"] as? String)
    }

    @Test func aRotatedKeyIsUsedAndPublishedWithoutARestart() async throws {
        try await Harness.with(.sqlite) { harness in
            var configuration = harness.auth(userURL: "http://127.0.0.1:9")
            // The key lives in the data folder, as `shop up` keeps it.
            configuration.signingKey = nil
            configuration.serviceClients = ["payment": "payment-secret"]
            configuration.keyReloadInterval = .milliseconds(100)
            let paths = (configuration.signingKeyPath, configuration.retiredSigningKeysPath)
            try await buildAuthService(configuration).test(.live) { client in
                let token = { @Sendable () async throws -> String in
                    try await client.execute(
                        uri: "/auth/service", method: .post, headers: .json, body: .json(#"{"serviceId":"payment","serviceSecret":"payment-secret"}"#)
                    ) { try $0.json(ServiceToken.self).token }
                }
                let jwks = { @Sendable () async throws -> JWKS in
                    try await client.execute(uri: "/.well-known/jwks.json", method: .get) { try $0.json(JWKS.self) }
                }
                let before = try await token()
                let first = try Self.keyID(of: before)
                // What `shop keys rotate` does, while the service runs.
                _ = try SigningKey.rotate(path: paths.0, retiredPath: paths.1, logger: .init(label: "rotate"))
                try await eventually("tokens signed with the new key") { try Self.keyID(of: try await token()) != first }
                let after = try await token()
                let published = try await jwks()
                // Both keys are published (the new one first), so old and new tokens verify.
                #expect(published.keys.count == 2)
                #expect(try await TokenVerifierFactory.verify(before, jwks: published).subject == "payment")
                #expect(try await TokenVerifierFactory.verify(after, jwks: published).subject == "payment")
            }
        }
    }

    @Test func servicesGetScopedTokensForTheirOwnSecretOnly() async throws {
        try await Harness.with(.sqlite) { harness in
            var configuration = harness.auth(userURL: "http://127.0.0.1:9")
            configuration.serviceClients = ["payment": "payment-secret", "notification": "notification-secret"]
            try await buildAuthService(configuration).test(.router) { client in
                let login = { (body: String) in
                    try await client.execute(uri: "/auth/service", method: .post, headers: .json, body: .json(body)) { $0 }
                }
                let good = try await login(#"{"serviceId":"payment","serviceSecret":"payment-secret"}"#)
                #expect(good.status == .ok)
                let token = try good.json(ServiceToken.self)
                #expect(token.expiresIn == 900)
                let jwks = try await client.execute(uri: "/.well-known/jwks.json", method: .get) { try $0.json(JWKS.self) }
                let identity = try await TokenVerifierFactory.verify(token.token, jwks: jwks)
                #expect(identity.role == .service)
                #expect(identity.subject == "payment")
                #expect(identity.scopes == Set(Scope.granted(to: .payment)))
                // The notification service may only register its own instances: it cannot read orders, let alone charge a card.
                let notification = try await login(#"{"serviceId":"notification","serviceSecret":"notification-secret"}"#).json(ServiceToken.self)
                #expect(try await TokenVerifierFactory.verify(notification.token, jwks: jwks).scopes == [Scope.registryRegister])

                for body in [
                    #"{"serviceId":"payment","serviceSecret":"notification-secret"}"#,
                    #"{"serviceId":"payment","serviceSecret":"payment-secreT"}"#,
                    #"{"serviceId":"nobody","serviceSecret":"payment-secret"}"#,
                ] {
                    let refused = try await login(body)
                    #expect(refused.status == .unauthorized, "\(body)")
                    #expect(refused.errorMessage == "Invalid service credentials")
                }
                #expect(try await login(#"{"serviceId":"payment"}"#).status == .badRequest)
                #expect(try await login("[]").status == .badRequest)
            }
        }
    }

    @Test func aUserTokenCannotCarryScopes() async throws {
        let keys = try await TestKeys()
        // A token minted with role user and scopes (as a forger would like) yields a user identity without them.
        let forged = try await keys.issuer.issue(subject: "u", role: .user, email: nil, scopes: [Scope.paymentsCharge]).token
        let identity = try await keys.verifier.verify(forged)
        #expect(identity.scopes.isEmpty)
        #expect(!identity.isService(with: Scope.paymentsCharge))
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

/// The address the login throttle counts: a forged `X-Forwarded-For` entry never picks the bucket.
@Suite struct LoginAddressTests {
    typealias Login = AuthService.LoginController

    @Test func theThrottleCountsTheHopTheTrustedProxiesSaw() throws {
        let none = TrustedProxies()
        let pods = try TrustedProxies(parsing: "10.0.0.0/8")
        // The gateway on loopback, no ranges (`shop up`): the address it appended.
        #expect(Login.clientAddress(peer: "127.0.0.1", forwardedFor: ["10.9.9.9, 198.51.100.4"], trusting: none) == "198.51.100.4")
        // Any other peer is the client, whatever it claims.
        #expect(Login.clientAddress(peer: "192.0.2.8", forwardedFor: ["198.51.100.4"], trusting: none) == "192.0.2.8")
        #expect(Login.clientAddress(peer: "192.0.2.8", forwardedFor: ["198.51.100.4"], trusting: pods) == "192.0.2.8")
        // A gateway pod behind an ingress pod: the client the ingress saw; what the client wrote left of it is ignored,
        // on one line or on a line of its own.
        #expect(Login.clientAddress(peer: "10.1.0.7", forwardedFor: ["10.9.9.9, 203.0.113.5, 10.2.0.3"], trusting: pods) == "203.0.113.5")
        #expect(Login.clientAddress(peer: "10.1.0.7", forwardedFor: ["198.51.100.99", "203.0.113.5, 10.2.0.3"], trusting: pods) == "203.0.113.5")
        // No header: the peer.
        #expect(Login.clientAddress(peer: "10.1.0.7", forwardedFor: [], trusting: pods) == "10.1.0.7")
    }
}
