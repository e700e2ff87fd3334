import ShopSystem

try await ServiceMain.run([.order])
