import UserService
import ShopRuntime

try await ServiceMain.run([UserServiceBuilder.self])
