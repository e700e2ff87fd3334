import NIOCore
import NIOPosix

/// Free ports on the loopback interface.
public enum Ports {
    /// A base port whose `count` consecutive ports are free now (between 20000 and 32000).
    public static func freeBase(count: Int = 7) throws -> Int {
        for _ in 0..<50 {
            let base = Int.random(in: 20_000..<32_000)
            let channels = (0..<count).compactMap { offset in
                try? ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: base + offset).wait()
            }
            for channel in channels { try? channel.close().wait() }
            if channels.count == count { return base }
        }
        throw PortsBusy()
    }

    public struct PortsBusy: Error {}
}
