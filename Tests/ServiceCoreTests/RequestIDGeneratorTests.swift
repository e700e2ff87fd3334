import Foundation
import NIOHTTP1
import ServiceCore
import Testing

@testable import ServiceProxy

@Suite struct RequestIDGeneratorTests {
    @Test func idsAreDistinctVersion4UUIDs() {
        var generator = RequestIDGenerator()
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let id = generator.make()
            #expect(id.count == 36)
            #expect(id == id.lowercased())
            let uuid = UUID(uuidString: id)
            #expect(uuid != nil)
            #expect(Array(id)[14] == "4")
            #expect("89ab".contains(Array(id)[19]))
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
        #expect(CorrelationID.isValid(generator.make()))
    }

    @Test func hopByHopHeadersAreDroppedAndTheRestKept() {
        var headers = HTTPHeaders([
            ("Connection", "keep-alive, X-Private"), ("X-Private", "1"), ("Keep-Alive", "timeout=5"), ("Accept", "*/*"), ("TE", "trailers"),
        ])
        ProxyHeaders.removeHopByHop(&headers)
        #expect(headers.map(\.name) == ["Accept"])
    }
}
