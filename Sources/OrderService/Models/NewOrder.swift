import ServiceCore
import ServiceHTTP
import ShopContracts

/// A validated `POST /orders` body: the guide's `createOrder` schema (prices are then checked against the catalog).
struct NewOrder: Sendable {
    struct Line: Sendable {
        var productId: String
        var quantity: Int
        var price: Double
    }

    var items: [Line]
    var shippingAddress: OrderDTO.Address

    init(body: JSONValue) throws {
        self = try Validation.validate(body) { body in
            body.allowOnly(["items", "shippingAddress"])
            return Self.read(from: body)
        }
    }

    /// Reads `items` and `shippingAddress` of an order or checkout body, reporting every bad field.
    static func read(from body: Validation.ObjectReader) -> NewOrder? {
        let items = body.objects("items", count: 1...100)?.map { item -> Line? in
            item.allowOnly(["productId", "quantity", "price", "name"])
            _ = item.string("name", required: false, maxLength: 200)
            let productId = item.string("productId", maxLength: 64, rule: Rules.identifier)
            let quantity = item.integer("quantity", in: 1...1000)
            let price = item.number("price", positive: true, maximum: 1_000_000, maxFractionDigits: 2)
            guard let productId, let quantity, let price else { return nil }
            return Line(productId: productId, quantity: quantity, price: price)
        }
        let address = body.object("shippingAddress").map { address -> OrderDTO.Address? in
            address.allowOnly(["street", "city", "country", "zipCode"])
            let street = address.string("street", maxLength: 200)
            let city = address.string("city", maxLength: 100)
            let country = address.string("country", maxLength: 100)
            let zipCode = address.string("zipCode", maxLength: 20)
            guard let street, let city, let country, let zipCode else { return nil }
            return OrderDTO.Address(street: street, city: city, country: country, zipCode: zipCode)
        }
        guard let items, let address = address ?? nil else { return nil }
        let lines = items.compactMap { $0 }
        guard lines.count == items.count else { return nil }
        return NewOrder(items: lines, shippingAddress: address)
    }

    init(items: [Line], shippingAddress: OrderDTO.Address) {
        self.items = items
        self.shippingAddress = shippingAddress
    }
}
