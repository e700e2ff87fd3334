import ShopSystem

try await ServiceMain.run([.gateway])
