import ServiceCore
import Testing

@Suite struct TrustedProxiesTests {
    @Test func rangesMatchByPrefixOnBothFamilies() throws {
        let proxies = try TrustedProxies(parsing: "10.0.0.0/8, 192.168.1.7, fd00::/8, 172.16.0.0/12")
        #expect(proxies.contains("10.200.3.4"))
        #expect(!proxies.contains("11.0.0.1"))
        #expect(proxies.contains("192.168.1.7"))
        #expect(!proxies.contains("192.168.1.8"))
        #expect(proxies.contains("172.31.255.255"))
        #expect(!proxies.contains("172.32.0.1"))
        #expect(proxies.contains("fd12:3456::1"))
        #expect(!proxies.contains("fe80::1"))
        // An IPv4 peer seen on a dual-stack socket.
        #expect(proxies.contains("::ffff:10.1.2.3"))
        #expect(!proxies.contains("not an address"))
        #expect(!TrustedProxies().contains("10.0.0.1"))
        #expect(try TrustedProxies(parsing: "0.0.0.0/0").contains("203.0.113.9"))
        #expect(try TrustedProxies(parsing: " , ").isEmpty)
        // A range written as IPv4-mapped IPv6 is the IPv4 range, for either spelling of a peer.
        let mapped = try TrustedProxies(parsing: "::ffff:10.0.0.0/104")
        #expect(mapped.contains("10.3.4.5") && mapped.contains("::ffff:10.3.4.5") && !mapped.contains("11.0.0.1"))
        #expect(throws: TrustedProxies.ParseError.self) { try TrustedProxies(parsing: "::ffff:10.0.0.0/64") }
    }

    @Test func unreadableListsAreRefusedWithTheEntry() {
        for list in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "example.com", "10.0.0.0/x", "10.0.0.0/-1"] {
            #expect(throws: TrustedProxies.ParseError.self, "\(list)") { try TrustedProxies(parsing: list) }
        }
        #expect((try? TrustedProxies(parsing: "10.0.0.0/8,nope")) == nil)
    }

    @Test func theClientIsTheRightMostHopThatIsNotATrustedProxy() throws {
        let proxies = try TrustedProxies(parsing: "10.0.0.0/8")
        // From an untrusted peer the header is ignored, whatever it says.
        #expect(proxies.client(peer: "203.0.113.5", forwardedFor: ["10.0.0.1"]) == "203.0.113.5")
        // Behind one trusted proxy: the address it appended.
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["203.0.113.5"]) == "203.0.113.5")
        // Whatever the client wrote left of that is not believed, even addresses that look trusted.
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["10.9.9.9, 198.51.100.1, 203.0.113.5"]) == "203.0.113.5")
        // Two trusted hops, in one header or in several.
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["203.0.113.5, 10.0.0.3"]) == "203.0.113.5")
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["203.0.113.5", "10.0.0.3"]) == "203.0.113.5")
        // Garbage right of every real hop: the last trusted hop is the client, so nothing forged can pick a bucket.
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["203.0.113.5, garbage, 10.0.0.3"]) == "10.0.0.3")
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["unknown"]) == "10.0.0.2")
        // Every hop trusted: the left-most.
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: ["10.0.0.5, 10.0.0.3"]) == "10.0.0.5")
        #expect(proxies.client(peer: "10.0.0.2", forwardedFor: []) == "10.0.0.2")
        // A peer believed without being in the ranges (the gateway on loopback, for the auth service): its hops are
        // still judged by the ranges.
        let none = TrustedProxies()
        #expect(none.client(peer: "127.0.0.1", forwardedFor: ["10.9.8.7, 203.0.113.5"], peerTrusted: true) == "203.0.113.5")
        #expect(proxies.client(peer: "127.0.0.1", forwardedFor: ["203.0.113.5, 10.0.0.3"], peerTrusted: true) == "203.0.113.5")
    }
}
