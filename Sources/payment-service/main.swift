import PaymentService
import ShopRuntime

try await ServiceMain.run([PaymentServiceBuilder.self])
