/// What can go wrong with a Redis command.
public enum RedisError: Error, Equatable, CustomStringConvertible {
    /// The server answered with an error reply (`-ERR …`, `-WRONGTYPE …`); ``ServerErrorKind`` is its prefix.
    case server(ServerErrorKind, message: String)
    /// No answer within the command's timeout: the connection is closed (later replies could not be matched).
    case timedOut
    /// The connection closed (or broke) before the answer came.
    case connectionClosed
    /// No connection could be made; the next attempt is not before the backoff has passed.
    case unavailable(String)
    /// The server's bytes were not RESP.
    case protocolError(String)
    /// A reply of a type the call did not expect.
    case unexpectedReply(String)

    public var description: String {
        switch self {
        case .server(_, let message): "redis: \(message)"
        case .timedOut: "redis: no reply within the command's timeout"
        case .connectionClosed: "redis: connection closed"
        case .unavailable(let reason): "redis: unavailable (\(reason))"
        case .protocolError(let reason): "redis: protocol error (\(reason))"
        case .unexpectedReply(let reply): "redis: unexpected reply \(reply)"
        }
    }

    /// The prefix of an error reply, typed for the ones callers act on.
    public enum ServerErrorKind: Equatable, Sendable {
        case err
        case wrongType
        /// The script's SHA is not in the server's cache (`EVALSHA`): send the script itself.
        case noScript
        /// The server is loading its dataset: retry later.
        case loading
        /// Wrong user or password (`WRONGPASS`), or a command before `AUTH` (`NOAUTH`).
        case authentication
        /// The user may not run the command (`NOPERM`).
        case noPermission
        case other(String)

        init(message: String) {
            let prefix = message.prefix { $0 != " " }
            switch prefix {
            case "ERR": self = .err
            case "WRONGTYPE": self = .wrongType
            case "NOSCRIPT": self = .noScript
            case "LOADING": self = .loading
            case "WRONGPASS", "NOAUTH": self = .authentication
            case "NOPERM": self = .noPermission
            default: self = .other(String(prefix))
            }
        }
    }

    /// The typed error of an error reply.
    public static func reply(_ message: String) -> RedisError {
        .server(ServerErrorKind(message: message), message: message)
    }
}
