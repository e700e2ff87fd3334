import InventoryService
import ShopRuntime

try await ServiceMain.run([InventoryServiceBuilder.self])
