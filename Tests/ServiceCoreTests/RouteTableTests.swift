import Hummingbird
import Testing

@testable import ServiceHTTP

/// The methods a path takes, as the router would resolve it: what a 405's `Allow` names.
@Suite struct RouteTableTests {
    @Test func theMostSpecificMatchingRouteGivesTheMethods() {
        let router = Router(context: BasicRequestContext.self)
        router.get("orders") { _, _ in "" }
        router.post("orders") { _, _ in "" }
        router.get("orders/:id") { _, _ in "" }
        router.post("orders/:id/cancel") { _, _ in "" }
        router.get("orders/user/:userId") { _, _ in "" }
        router.get("files/**") { _, _ in "" }
        let table = RouteTable()
        table.fill(from: router)
        #expect(table.methods(for: "/orders") == ["GET", "HEAD", "POST"])
        #expect(table.methods(for: "/orders/7") == ["GET", "HEAD"])
        #expect(table.methods(for: "/orders/7/cancel") == ["POST"])
        #expect(table.methods(for: "/orders/user/u1") == ["GET", "HEAD"])
        #expect(table.methods(for: "/files/a/b/c") == ["GET", "HEAD"])
        #expect(table.methods(for: "/nowhere").isEmpty)
        #expect(table.methods(for: "/orders/7/cancel/more").isEmpty)
    }
}
