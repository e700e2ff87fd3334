import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import ServiceCore

/// Answers a known path asked with a method it does not take with 405 and `Allow` (RFC 9110 §15.5.6), where
/// Hummingbird's router answers 404 as for an unknown path.
///
/// The router keeps no per-path method list that it exposes at request time, so the routes are read once the service
/// has added them all (``ServiceApplication/makeApplication(router:settings:services:logger:)``) and matched here the
/// way the router's trie resolves a path: a constant segment before a capture, so the methods named are the ones the
/// router would really take.
public struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let table: RouteTable

    init(table: RouteTable) {
        self.table = table
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            let allowed = table.methods(for: request.uri.path)
            // No route for the path; or the router resolved the path to another node than the one matched here (its
            // trie does not fall back from a constant segment to a capture): then 404, never a 405 naming this method.
            guard !allowed.isEmpty, !allowed.contains(request.method.rawValue) else { throw error }
            throw APIError(.methodNotAllowed, "Method not allowed", headers: [.allow: allowed.joined(separator: ", ")])
        }
    }
}

/// The routes of one router: each path's pattern and the methods it takes.
final class RouteTable: Sendable {
    private let entries = NIOLockedValueBox<[(path: RouterPath, methods: [String])]>([])

    /// Reads the routes of `router` (after they have all been added).
    func fill<Context>(from router: Router<Context>) {
        var byPath: [String: (RouterPath, Set<String>)] = [:]
        for route in router.routes {
            byPath[route.path.description, default: (route.path, [])].1.insert(route.method.rawValue)
        }
        let entries = byPath.values.map { path, methods -> (path: RouterPath, methods: [String]) in
            var methods = methods
            if methods.contains("GET") { methods.insert("HEAD") }
            return (path, methods.sorted())
        }
        self.entries.withLockedValue { $0 = entries }
    }

    /// The methods of the route the router would resolve `path` to; empty when no route's pattern matches it.
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var best: (rank: [Int], methods: [String])?
        for entry in entries.withLockedValue({ $0 }) {
            guard let rank = Self.rank(entry.path, segments) else { continue }
            if let current = best, !current.rank.lexicographicallyPrecedes(rank) { continue }
            best = (rank, entry.methods)
        }
        return best?.methods ?? []
    }

    /// How specifically `pattern` matches `segments`, segment by segment (a constant 3, a partial capture or wildcard
    /// 2, a capture or wildcard 1, a recursive wildcard 0), or nil when it does not match.
    static func rank(_ pattern: RouterPath, _ segments: [Substring]) -> [Int]? {
        var rank: [Int] = []
        var index = 0
        for element in pattern.components {
            if element == .recursiveWildcard {
                rank.append(0)
                return rank
            }
            guard index < segments.count, element ~= segments[index] else { return nil }
            let text = element.description
            if element == segments[index] {
                rank.append(3)
            } else if text == "*" || (text.hasPrefix("{") && text.hasSuffix("}") && text.dropFirst().firstIndex(of: "{") == nil) {
                rank.append(1)
            } else {
                rank.append(2)
            }
            index += 1
        }
        return index == segments.count ? rank : nil
    }
}
