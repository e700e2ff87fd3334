import Hummingbird
import ServiceAuth
import ServiceCore
import ServiceHTTP
import ShopContracts

/// The catalog: public reads (`GET /inventory`, `GET /inventory/:productId`) and admin writes (`PUT /inventory/:productId`).
struct InventoryController<Repository: ProductRepository> {
    let repository: Repository
    let verifier: TokenVerifier

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.get("inventory", use: list)
        router.get("inventory/:productId", use: get)
        router.group("inventory")
            .add(middleware: AuthMiddleware(verifier: verifier))
            .put(":productId", use: put)
    }

    @Sendable func list(request: Request, context: ServiceRequestContext) async throws -> Paginated<ProductDTO> {
        let page = try PageRequest(request: request)
        let (products, total) = try await repository.list(page)
        return Paginated(results: products, request: page, total: total)
    }

    @Sendable func get(request: Request, context: ServiceRequestContext) async throws -> ProductDTO {
        let id = try context.parameters.require("productId")
        guard let product = try await repository.find(id: id) else { throw APIError.notFound("Product not found") }
        return product
    }

    @Sendable func put(request: Request, context: ServiceRequestContext) async throws -> EditedResponse<ProductDTO> {
        guard try context.requireIdentity().role == .admin else { throw APIError.forbidden("Admin role required") }
        let id = try context.parameters.require("productId")
        if let problem = Rules.identifier(id) {
            throw APIError.validation([.init(field: "productId", message: "\"productId\" \(problem)")])
        }
        var request = request
        let update = try Validation.validate(try await request.jsonBody(context: context)) { body -> ProductUpdate? in
            body.allowOnly(["name", "price", "stock"])
            let name = body.string("name", minLength: 1, maxLength: 200)
            let price = body.number("price", positive: true, maximum: 1_000_000, maxFractionDigits: 2)
            let stock = body.integer("stock", in: 0...1_000_000_000)
            guard let name, let price, let stock else { return nil }
            return ProductUpdate(name: name, price: price, stock: stock)
        }
        let (product, created) = try await repository.upsert(id: id, update: update, at: Timestamp.now())
        context.logger.info("Product saved", metadata: ["productId": "\(id)", "created": "\(created)"])
        return EditedResponse(status: created ? .created : .ok, response: product)
    }
}
