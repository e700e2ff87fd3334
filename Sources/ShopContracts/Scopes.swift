/// What a service token may do. Each internal endpoint requires one scope, and each service is granted only the scopes
/// of the calls it makes (least privilege): a compromised notification service cannot charge a card.
public enum Scope {
    /// `POST /internal/credentials/verify` (user service), for login.
    public static let credentialsVerify = "credentials:verify"
    /// `GET /internal/orders/:id` (order service).
    public static let ordersRead = "orders:read"
    /// `POST/DELETE /internal/reservations` (inventory service).
    public static let inventoryReserve = "inventory:reserve"
    /// `POST /internal/charges`, `GET /internal/charges` (payment service).
    public static let paymentsCharge = "payments:charge"
    /// `POST /internal/charges/:id/refund` (payment service).
    public static let paymentsRefund = "payments:refund"
    /// `GET /internal/payments?orderId=` (payment service).
    public static let paymentsRead = "payments:read"
    /// `POST/PUT/DELETE /register` (the gateway's registry), for the service's own instances only.
    public static let registryRegister = "registry:register"

    /// The scopes `service`'s token carries.
    public static func granted(to service: ServiceName) -> [String] {
        let own: [String] =
            switch service {
            case .auth: [credentialsVerify]
            case .payment: [ordersRead]
            case .order: [inventoryReserve, paymentsCharge, paymentsRefund, paymentsRead]
            case .gateway, .user, .inventory, .notification, .paymentProvider: []
            }
        // Every shop service but the gateway (which hosts the registry) registers its instances.
        return service == .gateway || !service.isShopService ? own : own + [registryRegister]
    }
}
