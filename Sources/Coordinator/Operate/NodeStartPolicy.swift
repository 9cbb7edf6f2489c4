import Foundation

/// What must hold before a node *starts* (before its bundle is sent, or its drain in a reboot rollout): the
/// maintenance window is open and no matching Prometheus alert fires. A node already in flight is never held.
/// The decision is pure (`decide`); `RolloutExecutor` does the waiting.
public struct NodeStartPolicy: Sendable {
    /// The inventory's `window`, if any.
    public var window: MaintenanceWindow?
    /// Asks for the names of the firing alerts that block (`PrometheusAlertsClient.blocking`), if there is an
    /// alert gate.
    public var blockingAlerts: (@Sendable () async throws -> [String])?
    /// `--no-wait`: outside the window, stop the rollout (exit 9) instead of waiting.
    public var noWait: Bool
    /// How often firing alerts are asked again while a node waits on them.
    public var alertRecheck: Duration
    /// The longest single sleep while waiting for the window (the wall clock is read again after each).
    public var windowRecheck: Duration

    /// A policy.
    public init(
        window: MaintenanceWindow? = nil, blockingAlerts: (@Sendable () async throws -> [String])? = nil,
        noWait: Bool = false, alertRecheck: Duration = .seconds(15), windowRecheck: Duration = .seconds(60)
    ) {
        self.window = window
        self.blockingAlerts = blockingAlerts
        self.noWait = noWait
        self.alertRecheck = alertRecheck
        self.windowRecheck = windowRecheck
    }

    /// Whether the policy can ever hold a node.
    public var holdsAnything: Bool { window != nil || blockingAlerts != nil }

    /// What to do about a node that would start at `date`.
    public enum Decision: Sendable, Hashable {
        case go
        /// The window is closed; it opens at `opens` (nil: never, a window without days).
        case closed(opens: Date?)
        /// These alerts fire.
        case alerts([String])
        /// The alert gate could not be asked (fail closed: a node does not start on an unknown alert state).
        case alertsUnknown(String)
    }

    /// The window's part of the decision at `date`.
    public func windowDecision(at date: Date) -> Decision {
        guard let window, !window.contains(date) else { return .go }
        return .closed(opens: window.nextOpening(after: date))
    }

    /// The alert gate's part, from its answer.
    public static func alertDecision(_ answer: Result<[String], any Error>) -> Decision {
        switch answer {
        case .success(let names): return names.isEmpty ? .go : .alerts(names)
        case .failure(let e): return .alertsUnknown("\(e)")
        }
    }
}
