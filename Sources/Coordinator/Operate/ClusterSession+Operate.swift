import Foundation

/// The rollout log and the start policy of a session's rollouts, from the inventory's `rollout_log_dir`,
/// `window` and `gates.prometheus`.
extension ClusterSession {
    /// Opens a new event log in the inventory's log directory and returns a sink writing to it and to `sink`;
    /// its first event names the file. A log that cannot be created is a warning, never a reason not to roll.
    func loggingSink(_ sink: any RolloutEventSink) -> any RolloutEventSink {
        do {
            let directory = inventory.operate.rolloutLogDirectory
            let log = try RolloutLogSink(directory: directory) { error in
                sink.emit(
                    RolloutEvent(
                        timestamp: Date(), node: nil, phase: .rollout, status: .warning,
                        message: "the rollout log in \(directory) lost a line (\(error.localizedDescription)); the rollout goes on, "
                            + "and its report will miss what the log could not keep"))
            }
            let both = FanOutEventSink([log, sink])
            both.emit(
                RolloutEvent(
                    timestamp: Date(), node: nil, phase: .rollout, status: .info,
                    message: "Rollout log: \(log.path) (`nk3 report \(log.path)` draws it)"))
            return both
        } catch {
            sink.emit(RolloutEvent(timestamp: Date(), node: nil, phase: .rollout, status: .warning, message: "no rollout log: \(error)"))
            return sink
        }
    }

    /// The start policy of the inventory (nil when it has neither a window nor an alert gate).
    public func startPolicy(noWait: Bool) -> NodeStartPolicy? {
        let settings = inventory.operate
        guard settings.window != nil || settings.prometheus != nil else { return nil }
        var policy = NodeStartPolicy(window: settings.window, noWait: noWait)
        if let prometheus = settings.prometheus {
            policy.blockingAlerts = {
                try await PrometheusAlertsClient.withClient(prometheus) { try await $0.blocking() }
            }
        }
        return policy
    }
}
