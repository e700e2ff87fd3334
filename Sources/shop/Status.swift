import ArgumentParser
import Foundation
import ShopContracts
import ShopSystem

/// `shop status`: every instance of a local system (gateways and instances on free ports too, read from the gateway's
/// registry as the admin) and whether each answers ready.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show every instance of a running system and whether it is ready.")

    @Option(help: "Gateway port of the system to check.")
    var portBase = 3000

    @Option(name: .customLong("data-dir"), help: "Data folder of the system (its admin password, to read the registry).")
    var dataDirectory = "./.shop"

    @Flag(help: "Print JSON: {gateway, registry, ready, instances: [{service, url, id, ready}]}.")
    var json = false

    func run() async throws {
        let system = LocalSystem(portBase: portBase, dataDirectory: dataDirectory, adminPassword: "")
        let status = await SystemStatus.collect(system: system, adminPassword: AdminAccount.existingPassword(dataDirectory: dataDirectory))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            print(Self.table(status.instances.map { [$0.service, $0.url, $0.ready ? "ready" : "DOWN"] }), terminator: "")
            if status.registry != "read" { print("(registry \(status.registry); only the well-known ports are listed)") }
        }
        if !status.ready { throw ExitCode(1) }
    }

    /// Rows as columns as wide as their widest cell: no name is ever cut.
    static func table(_ rows: [[String]]) -> String {
        let widths = rows.reduce(into: [Int]()) { widths, row in
            for (index, cell) in row.enumerated() {
                if index < widths.count { widths[index] = max(widths[index], cell.count) } else { widths.append(cell.count) }
            }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.map { $0 + "\n" }.joined()
    }
}
