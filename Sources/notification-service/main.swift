import ShopSystem

try await ServiceMain.run([.notification])
