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

    /// Defaults sized for real hardware (a reboot of a server with many disks takes minutes). Every default
    /// has one source: the inventory's `timeouts:` defaults (`Timeouts`) and `AgentClient.defaultTimeout`.
    public init(
        agentCall: Duration = AgentClient.defaultTimeout, rebuild: Duration = Timeouts().rebuild,
        drain: Duration = Timeouts().drain, reboot: Duration = Timeouts().reboot, ready: Duration = Timeouts().ready,
        gates: Duration = Timeouts().gates, reachablePoll: Duration = .seconds(3)
    ) {
        self.agentCall = agentCall
        self.rebuild = rebuild
        self.drain = drain
        self.reboot = reboot
        self.ready = ready
        self.gates = gates
        self.reachablePoll = reachablePoll
    }

    /// The inventory's `timeouts:`, and `agentCall` for one agent request.
    public init(_ t: Timeouts, agentCall: Duration = AgentClient.defaultTimeout) {
        self.init(agentCall: agentCall, rebuild: t.rebuild, drain: t.drain, reboot: t.reboot, ready: t.ready, gates: t.gates)
    }
}

/// A call took longer than its timeout.
public struct RolloutTimedOut: Error, Sendable, Hashable, CustomStringConvertible {
    /// The timeout that passed.
    public var after: Duration
    public var description: String { "no answer within \(RolloutDurations.describe(after))" }
}
