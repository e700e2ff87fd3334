import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceResilience

/// A wake-up call for one waiting loop (a relay, a consumer): `signal()` ends the current or next `wait` early.
///
/// Written by hand: AsyncStream iterators cannot be raced against a timer across tasks, and racing a `Task.sleep`
/// that is cancelled on almost every wake-up (many times a second per consumer) proved able to stall the runtime's
/// timers on Linux. The timeout here is an event-loop timer instead, and nothing is cancelled on the common path.
public final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var timer: Scheduled<Void>?
        /// Which wait the current waiter and timer belong to.
        var generation = 0
    }

    private let state = NIOLockedValueBox(State())
    private let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.any()) {
        self.eventLoop = eventLoop
    }

    /// Wakes the waiter, or the next one to wait.
    public func signal() {
        resume(markPending: true)
    }

    private func resume(markPending: Bool, generation: Int? = nil) {
        let (waiter, timer) = state.withLockedValue { state -> (CheckedContinuation<Void, Never>?, Scheduled<Void>?) in
            if let generation, generation != state.generation { return (nil, nil) }
            guard let waiter = state.waiter else {
                if markPending { state.pending = true }
                return (nil, nil)
            }
            defer {
                state.waiter = nil
                state.timer = nil
            }
            return (waiter, state.timer)
        }
        timer?.cancel()
        waiter?.resume()
    }

    /// Returns at a signal, after `timeout`, or on cancellation, whichever is first.
    public func wait(timeout: Duration) async {
        let nanoseconds = timeout.wholeNanoseconds
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let generation = state.withLockedValue { state -> Int? in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return nil
                    }
                    state.generation += 1
                    state.waiter = continuation
                    return state.generation
                }
                guard let generation else {
                    continuation.resume()
                    return
                }
                let timer: Scheduled<Void> = eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { [weak self] in
                    self?.resume(markPending: false, generation: generation)
                }
                state.withLockedValue { state in
                    if state.waiter != nil, state.generation == generation { state.timer = timer } else { timer.cancel() }
                }
            }
        } onCancel: {
            resume(markPending: false)
        }
    }

    /// Waits `duration` on an event-loop timer; signals meanwhile are kept for the next `wait`. (Not cancellable: meant
    /// for pauses of a few milliseconds.)
    public func pause(_ duration: Duration) async {
        let nanoseconds = duration.wholeNanoseconds
        guard nanoseconds > 0 else { return }
        try? await eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {}.futureResult.get()
    }
}
