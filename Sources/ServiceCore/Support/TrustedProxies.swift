import Foundation

/// The proxies in front of the gateway whose `X-Forwarded-For` is believed (an ingress controller, a load balancer),
/// as addresses and CIDR ranges. Behind them, the client is the right-most forwarded address that is not itself one of
/// them: each trusted hop appends the peer it saw, so everything left of the first untrusted address came from the
/// client and may be forged. From any other peer the header is ignored and the peer is the client.
///
/// Written here because no library in the mirror matches addresses against CIDR ranges; the parsing is the C
/// library's `inet_pton`.
public struct TrustedProxies: Sendable, Equatable, CustomStringConvertible {
    /// One range: the first `prefixLength` bits of `address` (4 bytes for IPv4, 16 for IPv6).
    struct Range: Sendable, Equatable {
        var address: [UInt8]
        var prefixLength: Int

        func contains(_ other: [UInt8]) -> Bool {
            guard other.count == address.count else { return false }
            var bits = prefixLength
            for index in address.indices where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if address[index] & mask != other[index] & mask { return false }
                bits -= 8
            }
            return true
        }
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    let ranges: [Range]
    /// The ranges as written, for logs.
    public let description: String

    /// None: no peer's forwarded header is believed.
    public init() {
        self.ranges = []
        self.description = ""
    }

    /// `list` is comma-separated addresses (`10.0.0.7`, `fd00::1`) and ranges (`10.0.0.0/8`, `fd00::/8`).
    public init(parsing list: String) throws {
        var ranges: [Range] = []
        for item in list.split(separator: ",") {
            let text = item.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard let address = Self.bytes(of: String(parts[0])) else {
                throw ParseError(description: "not an IP address or CIDR range: \(text)")
            }
            // An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) is the IPv4 range it maps: its last 32 bits.
            let mapped = address.count == 4 && parts[0].contains(":")
            let bits = mapped ? 128 : address.count * 8
            var prefixLength = address.count * 8
            if parts.count == 2 {
                guard let length = Int(parts[1]), ((mapped ? 96 : 0)...bits).contains(length) else {
                    throw ParseError(description: "not a prefix length for \(address.count == 4 && !mapped ? "IPv4" : "IPv6"): \(text)")
                }
                prefixLength = mapped ? length - 96 : length
            }
            ranges.append(Range(address: address, prefixLength: prefixLength))
        }
        self.ranges = ranges
        self.description = ranges.isEmpty ? "" : list
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// True when `address` (textual) is in one of the ranges.
    public func contains(_ address: String) -> Bool {
        guard !ranges.isEmpty, let bytes = Self.bytes(of: address) else { return false }
        return ranges.contains { $0.contains(bytes) }
    }

    /// The client of a request that came from `peer` with these `X-Forwarded-For` values (each possibly a list).
    /// `peerTrusted` believes the peer without it being in the ranges (the gateway on loopback); the hops it forwarded
    /// for are still judged by the ranges alone.
    public func client(peer: String, forwardedFor values: [Substring], peerTrusted: Bool = false) -> String {
        guard peerTrusted || contains(peer), !values.isEmpty else { return peer }
        var client = peer
        for value in values.reversed() {
            for entry in value.split(separator: ",").reversed() {
                let address = entry.trimmingCharacters(in: .whitespaces)
                // Not an address: whatever is left of here cannot be told apart from forgery; the hop that passed it
                // on is the client.
                guard Self.bytes(of: address) != nil else { return client }
                client = address
                if !contains(address) { return client }
            }
        }
        return client
    }

    /// The address's bytes: 4 for IPv4 (an IPv4-mapped IPv6 address too), 16 for IPv6; nil when it is not one.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return Array(bytes[12...])
        }
        return bytes
    }
}
