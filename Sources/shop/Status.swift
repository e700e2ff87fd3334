import ArgumentParser
import ShopContracts
import ShopSystem

/// `shop status`: which services of a local system answer ready.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show which services of a running system are ready.")

    @Option(help: "Gateway port of the system to check.")
    var portBase = 3000

    func run() async throws {
        let system = LocalSystem(portBase: portBase, adminPassword: "")
        var down = 0
        for service in system.services {
            let ready = await Readiness.isReady(system.url(of: service))
            if !ready { down += 1 }
            print("\(service.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(system.url(of: service))  \(ready ? "ready" : "DOWN")")
        }
        if down > 0 { throw ExitCode(1) }
    }
}
