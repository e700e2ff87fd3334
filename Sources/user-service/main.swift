import ShopSystem

try await ServiceMain.run([.user])
