import GatewayService
import ShopRuntime

try await ServiceMain.run([GatewayBuilder.self])
