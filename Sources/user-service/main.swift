import ShopRuntime
import UserService

try await ServiceMain.run([UserServiceBuilder.self])
