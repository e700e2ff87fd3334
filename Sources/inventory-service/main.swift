import ShopSystem

try await ServiceMain.run([.inventory])
