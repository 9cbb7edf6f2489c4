import Foundation

/// How long each wait may take before the rollout aborts. Every wait has one (colmena#166 waited forever).
public struct RolloutTimeouts: Sendable, Hashable {
    /// One request to an agent (submit, status).
    public var agentCall: Duration
    /// `nixos-rebuild` on a node, from the accepted envelope to its result.
    public var rebuild: Duration
    /// Draining a node (passed to the drain; PDB-blocked evictions retry until then).
    public var drain: Duration
    /// From the reboot request until the agent answers with a new boot id.
    public var reboot: Duration
    /// Until kubelet reports Ready.
    public var ready: Duration
    /// One run of the health gates.
    public var gates: Duration
    /// One status poll while a node reboots. A poll that hangs — a connection the old boot accepted just
    /// before it went down, or a host that is still off and never answers the SYN — is abandoned and the
    /// next one tried, instead of holding the wait for a whole `agentCall` (`nk3 bench` saw such a poll
    /// cost 10 s on a node that was back 7 ms after going down).
    public var reachablePoll: Duration

    /// Defaults sized for real hardware (a reboot of a server with many disks takes minutes).
    public init(
        agentCall: Duration = .seconds(30), rebuild: Duration = .seconds(3600), drain: Duration = .seconds(600),
        reboot: Duration = .seconds(900), ready: Duration = .seconds(600), gates: Duration = .seconds(900),
        reachablePoll: Duration = .seconds(3)
    ) {
        self.agentCall = agentCall
        self.rebuild = rebuild
        self.drain = drain
        self.reboot = reboot
        self.ready = ready
        self.gates = gates
        self.reachablePoll = reachablePoll
    }
}

/// A call took longer than its timeout.
public struct RolloutTimedOut: Error, Sendable, Hashable, CustomStringConvertible {
    /// The timeout that passed.
    public var after: Duration
    public var description: String { "no answer within \(RolloutDurations.describe(after))" }
}
