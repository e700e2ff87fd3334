/// One complete server reply: its three-digit code and the text of each of its lines (code and separator removed).
public struct SMTPReply: Sendable, Equatable {
    public var code: Int
    public var lines: [String]

    public init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    /// 2xx or 3xx: the command succeeded, or the server waits for more.
    public var isPositive: Bool { (200..<400).contains(code) }
    /// 4xx: a temporary failure.
    public var isTransient: Bool { (400..<500).contains(code) }
    /// 5xx: a permanent failure.
    public var isPermanent: Bool { (500..<600).contains(code) }

    /// The lines' text on one line, for error messages.
    public var message: String { lines.joined(separator: " ") }

    /// The service extensions an EHLO reply announces (every line after the first), keyed by upper-cased keyword, with
    /// their parameters: `AUTH PLAIN LOGIN` → `["AUTH": ["PLAIN", "LOGIN"]]`. The old `AUTH=PLAIN` form is read too.
    var extensions: [String: [String]] {
        var extensions: [String: [String]] = [:]
        for line in lines.dropFirst() {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "=" }).map { $0.uppercased() }
            guard let keyword = words.first else { continue }
            extensions[keyword, default: []] += words.dropFirst()
        }
        return extensions
    }
}
