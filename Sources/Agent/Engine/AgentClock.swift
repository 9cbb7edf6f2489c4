#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// The engine's view of time: wall-clock `now()` (deadlines are persisted as dates and survive reboots) and
/// `sleep(until:)`. Injected so tests and the simulator control time.
public protocol AgentClock: Sendable {
    /// The current wall-clock time.
    func now() -> Date
    /// Returns once `now() >= deadline`; throws `CancellationError` if the task is cancelled.
    func sleep(until deadline: Date) async throws
}

/// Real time. Sleeps in slices of at most a minute and re-reads the wall clock, so a clock step (NTP) moves the
/// deadline with it; no wake-ups at all while no deadline is armed.
public struct SystemAgentClock: AgentClock {
    /// Creates the real clock.
    public init() {}

    public func now() -> Date { Date() }

    public func sleep(until deadline: Date) async throws {
        while true {
            let remaining = deadline.timeIntervalSince(Date())
            if remaining <= 0 { return }
            try await Task.sleep(for: .milliseconds(Int64(min(remaining, 60) * 1000) + 1))
        }
    }
}

/// A clock that only moves when told to (tests, fast simulations). Sleepers wake when `advance` passes
/// their deadline.
public final class ManualAgentClock: AgentClock, Sendable {
    private struct Sleeper {
        var id: UInt64
        var deadline: Date
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Date
        var nextID: UInt64 = 0
        var sleepers: [Sleeper] = []
    }

    private let state: Mutex<State>

    /// Starts at `start`.
    public init(start: Date = Date()) { state = Mutex(State(now: start)) }

    public func now() -> Date { state.withLock { $0.now } }

    /// Number of tasks currently sleeping on this clock.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// Moves time forward by `seconds` and wakes every sleeper whose deadline has passed.
    public func advance(by seconds: TimeInterval) {
        let due: [Sleeper] = state.withLock { s in
            s.now = s.now.addingTimeInterval(seconds)
            let now = s.now
            let due = s.sleepers.filter { $0.deadline <= now }
            s.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for d in due { d.continuation.resume() }
    }

    /// Moves time to `date` (never backwards).
    public func advance(to date: Date) {
        advance(by: max(0, date.timeIntervalSince(now())))
    }

    public func sleep(until deadline: Date) async throws {
        let id: UInt64 = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let resumeNow: Bool = state.withLock { s in
                    if Task.isCancelled { return true }
                    if s.now >= deadline { return true }
                    s.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: c))
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c: CheckedContinuation<Void, any Error>? = state.withLock { s in
                guard let i = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: i).continuation
            }
            c?.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }
}
