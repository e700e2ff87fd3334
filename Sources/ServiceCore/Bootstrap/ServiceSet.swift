import ServiceLifecycle

/// Several services run as one (e.g. a server and the agent that registers it): all start together, the set ends when
/// every one has ended, and one that throws cancels the others and ends the set with its error. Graceful shutdown
/// reaches each of them (it is inherited by child tasks).
public struct ServiceSet: Service {
    let services: [any Service]

    public init(_ services: [any Service]) {
        self.services = services
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services {
                group.addTask { try await service.run() }
            }
            do {
                while try await group.next() != nil {}
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}
