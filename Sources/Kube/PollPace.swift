/// The pace of a wait that polls: look again after a few milliseconds at first, then after half the time
/// waited so far, never after more than the poll interval.
///
/// A condition that turns true at once (a no-op rebuild, a pod that is already gone, an instant simulated
/// reboot) is seen within about 1.5× the time it took instead of a whole interval later; a condition that
/// takes minutes (a real reboot, a slow drain) is polled once per interval, as with a fixed poll. Used by
/// the drain's wait for evicted pods and the rollout's waits. `nk3 bench --scenario rollout` measured the
/// fixed-interval sleeps before the first look as most of the coordinator's per-node overhead.
public enum PollPace {
    /// The first look comes this soon (or after the interval, if that is shorter).
    public static let firstPoll: Duration = .milliseconds(5)

    /// The sleep before the next look, after `waited` of waiting, for a poll `interval`.
    public static func delay(waited: Duration, interval: Duration) -> Duration {
        min(interval, max(min(firstPoll, interval), waited / 2))
    }
}
