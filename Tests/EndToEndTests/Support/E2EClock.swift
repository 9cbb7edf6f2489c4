import Foundation
import NK3Agent
import Synchronization

/// The agents' clock for tests that wait out a confirm deadline: real time plus an offset the test can
/// jump forward. `ManualAgentClock` (frozen until advanced) does not compose with the simulation: Rook's
/// status check stamps `lastChecked` with the agents' clock while the coordinator's Ceph gate compares it with
/// its own wall clock, so a frozen clock reads as "never checked since the node came back" and the gate
/// (rightly) never passes. This clock runs with the wall clock, so everything before the jump is real, and
/// `jump(by:)` makes the agents' deadlines pass at once.
final class E2EJumpClock: AgentClock {
    private let offset = Mutex<TimeInterval>(0)

    init() {}

    func now() -> Date { Date().addingTimeInterval(offset.withLock { $0 }) }

    /// Moves the clock forward by `seconds`; sleepers notice within 20 ms.
    func jump(by seconds: TimeInterval) { offset.withLock { $0 += max(0, seconds) } }

    /// Moves the clock to `date` (never backwards).
    func jump(to date: Date) { jump(by: date.timeIntervalSince(now())) }

    func sleep(until deadline: Date) async throws {
        while true {
            let remaining = deadline.timeIntervalSince(now())
            if remaining <= 0 { return }
            // Slices of at most 20 ms so a jump is noticed; only the few armed deadlines sleep here.
            try await Task.sleep(for: .milliseconds(Int64(min(remaining, 0.02) * 1000) + 1))
        }
    }
}
