import ArgumentParser
import AsyncHTTPClient
import Foundation

/// `shop probe URL`: exits 0 when `GET URL` answers 200 within the timeout, 1 otherwise — a container's health check
/// without a shell or curl in the image.
struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 if GET URL answers 200 (a container health check).")

    @Argument(help: "The URL to get, e.g. http://127.0.0.1:3000/health/ready.")
    var url: String

    @Option(help: "Seconds to wait for the answer.")
    var timeout = 2

    func validate() throws {
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            throw ValidationError("not an http(s) URL: '\(url)'")
        }
        guard (1...60).contains(timeout) else { throw ValidationError("--timeout must be 1 to 60 seconds") }
    }

    func run() async throws {
        let ok: Bool
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(Int64(timeout)))
            _ = try? await response.body.collect(upTo: 1 << 20)
            ok = response.status == .ok
        } catch {
            ok = false
        }
        if !ok { throw ExitCode(1) }
    }
}
