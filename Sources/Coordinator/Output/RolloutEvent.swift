import Foundation

/// Where in a rollout an event happened. Node steps share their names with `RolloutStep`.
public enum RolloutPhase: String, Codable, Sendable, Hashable, CaseIterable {
    /// Taking, renewing or releasing the one-rollout-per-cluster Lease.
    case lease
    /// Checks before anything is touched (inputs, quorum, reachability of every agent).
    case preflight
    /// An agent answered a status request.
    case probe
    /// Plan/diff output for a node (what will change).
    case plan
    case send
    case rebuild
    case drain
    case reboot
    case reachable
    case ready
    case uncordon
    case gates
    case confirm
    /// A node waits for the inventory's maintenance window to open before it starts.
    case window
    /// A node waits for matching Prometheus alerts to stop firing before it starts (`gates.prometheus`).
    case alerts
    /// The rollout as a whole (done, aborted).
    case rollout
}

/// How an event went. The human sink picks its colour from this.
public enum RolloutEventStatus: String, Codable, Sendable, Hashable, CaseIterable {
    /// A step began ("Draining X").
    case started
    /// A step or check succeeded ("X uncordoned", "kubelet is ready on X").
    case ok
    /// Nothing to do ("No action needed on X").
    case skipped
    /// Still waiting for something to recover ("1 daemonsets recovering in namespace default").
    case waiting
    /// Worth a look, not fatal.
    case warning
    /// The rollout stops here.
    case failed
    /// Plain information.
    case info
    /// A unified diff; the human sink colours its `+`/`-` lines.
    case diff
}

/// What the rollout engine decided to tell people, before it gets a timestamp.
public struct RolloutNotice: Codable, Sendable, Hashable {
    /// The node this is about, if any (gates and the rollout as a whole have none).
    public var node: String?
    /// Where in the rollout.
    public var phase: RolloutPhase
    /// How it went.
    public var status: RolloutEventStatus
    /// The human line, e.g. "Rebooting d752cf78-…".
    public var message: String

    /// Makes a notice.
    public init(node: String?, phase: RolloutPhase, status: RolloutEventStatus, message: String) {
        self.node = node
        self.phase = phase
        self.status = status
        self.message = message
    }
}

/// One thing that happened during a rollout, as printed for people or written as one JSON line.
public struct RolloutEvent: Codable, Sendable, Hashable {
    /// When it happened (wall clock of the coordinator).
    public var timestamp: Date
    /// The node this is about, if any.
    public var node: String?
    /// Where in the rollout.
    public var phase: RolloutPhase
    /// How it went.
    public var status: RolloutEventStatus
    /// The human line.
    public var message: String

    /// Makes an event.
    public init(timestamp: Date, node: String?, phase: RolloutPhase, status: RolloutEventStatus, message: String) {
        self.timestamp = timestamp
        self.node = node
        self.phase = phase
        self.status = status
        self.message = message
    }

    /// Stamps a notice from the rollout machine.
    public init(_ notice: RolloutNotice, at timestamp: Date) {
        self.init(
            timestamp: timestamp, node: notice.node, phase: notice.phase, status: notice.status,
            message: notice.message)
    }
}
