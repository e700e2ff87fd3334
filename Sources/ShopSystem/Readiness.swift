import AsyncHTTPClient
import Foundation
import NIOCore

/// Waiting for services to become ready.
public enum Readiness {
    /// A service that did not become ready in time.
    public struct NotReady: Error, CustomStringConvertible {
        public var url: String
        public var description: String { "\(url) did not become ready in time" }
    }

    /// Polls `GET <url>/health/ready` of every URL until each answers 200, or throws at `deadline`.
    public static func wait(for urls: [String], timeout: Duration = .seconds(60), client: HTTPClient = .shared) async throws {
        let deadline = ContinuousClock.now + timeout
        for url in urls {
            while true {
                if await isReady(url, client: client) { break }
                guard ContinuousClock.now < deadline else { throw NotReady(url: url) }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// True when `GET <url>/health/ready` answers 200 within a second.
    public static func isReady(_ url: String, client: HTTPClient = .shared) async -> Bool {
        do {
            let response = try await client.execute(HTTPClientRequest(url: url + "/health/ready"), timeout: .seconds(1))
            _ = try? await response.body.collect(upTo: 1 << 20)
            return response.status == .ok
        } catch {
            return false
        }
    }
}
