import Foundation

/// A virtual clock for rollout tests. A sleep of at most `autoAdvanceLimit` (a poll) moves virtual time to
/// its deadline at once and returns; longer sleeps (timeouts, lease renewal) wait until polls or `advance`
/// carry virtual time past their deadline. So every wait runs in virtual time, nothing sleeps for real, and
/// a timeout of N seconds fires after N / pollInterval polls — deterministic on a loaded machine.
final class RolloutTestClock: Clock, @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock`.
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by d: Duration) -> Instant { Instant(offset: offset + d) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private struct Waiter {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)
    private var waiters: [UInt64: Waiter] = [:]
    private var cancelled: Set<UInt64> = []
    private var nextID: UInt64 = 0
    let autoAdvanceLimit: Duration
    /// Wall-clock time at virtual zero.
    let epoch: Date

    init(autoAdvanceLimit: Duration = .seconds(1), epoch: Date = Date(timeIntervalSince1970: 1_714_564_800)) {
        self.autoAdvanceLimit = autoAdvanceLimit
        self.epoch = epoch
    }

    var now: Instant { lock.withLock { current } }
    var minimumResolution: Duration { .nanoseconds(1) }

    /// Virtual wall-clock time.
    var date: Date {
        let (s, atto) = now.offset.components
        return epoch.addingTimeInterval(Double(s) + Double(atto) / 1e18)
    }

    func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try Task.checkCancellation()
        let start = now
        if deadline <= start || start.duration(to: deadline) <= autoAdvanceLimit {
            advance(to: deadline)
            await Task.yield()
            try Task.checkCancellation()
            return
        }
        let id: UInt64 = lock.withLock {
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                lock.lock()
                if cancelled.remove(id) != nil {
                    lock.unlock()
                    c.resume(throwing: CancellationError())
                } else if deadline <= current {
                    lock.unlock()
                    c.resume()
                } else {
                    waiters[id] = Waiter(deadline: deadline, continuation: c)
                    lock.unlock()
                }
            }
        } onCancel: {
            lock.lock()
            if let w = waiters.removeValue(forKey: id) {
                lock.unlock()
                w.continuation.resume(throwing: CancellationError())
            } else {
                cancelled.insert(id)
                lock.unlock()
            }
        }
    }

    /// Moves virtual time forward to `t` (never back) and wakes the sleepers it passes.
    func advance(to t: Instant) {
        lock.lock()
        if current < t { current = t }
        let due = waiters.filter { $0.value.deadline <= current }
        for id in due.keys { waiters.removeValue(forKey: id) }
        lock.unlock()
        for w in due.values { w.continuation.resume() }
    }

    /// Moves virtual time forward by `d`.
    func advance(by d: Duration) { advance(to: now.advanced(by: d)) }
}
