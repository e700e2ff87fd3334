import ShopSystem

try await ServiceMain.run([.payment])
