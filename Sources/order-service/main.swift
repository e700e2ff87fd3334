import OrderService
import ShopRuntime

try await ServiceMain.run([OrderServiceBuilder.self])
