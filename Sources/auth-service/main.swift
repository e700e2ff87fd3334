import ShopSystem

try await ServiceMain.run([.auth])
