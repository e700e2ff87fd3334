import Hummingbird

// Contract types are answered directly by route handlers as JSON.
extension UserDTO: ResponseEncodable {}
extension UserWithOrders: ResponseEncodable {}
extension TokenResponse: ResponseEncodable {}
extension ProductDTO: ResponseEncodable {}
extension OrderDTO: ResponseEncodable {}
extension UserChanged: ResponseEncodable {}
extension PaymentDTO: ResponseEncodable {}
extension CheckoutDTO: ResponseEncodable {}
extension PaymentStatusDTO: ResponseEncodable {}
