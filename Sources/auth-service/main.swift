import AuthService
import ShopRuntime

try await ServiceMain.run([AuthServiceBuilder.self])
