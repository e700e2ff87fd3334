import NotificationService
import ShopRuntime

try await ServiceMain.run([NotificationServiceBuilder.self])
