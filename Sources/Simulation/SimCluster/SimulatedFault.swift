import Foundation

/// A fault the simulated cluster can inject into one node — a SIMULATION of things that go wrong in the field.
public enum SimulatedFault: String, Sendable, Hashable, CaseIterable, Codable {
    /// Every `nixos-rebuild` fails evaluation: `error: undefined variable 'foo' at
    /// /etc/nixos/configuration.nix:12:3`, exit 1 (the agent restores the old files).
    case rebuildEvaluationError = "rebuild-eval-error"
    /// The kubelet never turns Ready after a boot (the agent rolls back at its confirm deadline).
    case kubeletNeverReady = "kubelet-never-ready"
    /// The machine never comes back after a reboot (clearing the fault powers it on again).
    case neverReturnsAfterReboot = "never-returns"
    /// A reboot hangs: nothing happens, the agent stays up with the old boot id.
    case rebootHangs = "reboot-hangs"
    /// The agent process is gone (connections refused) while the machine runs; clearing restarts it.
    case agentUnreachable = "agent-unreachable"
    /// A PodDisruptionBudget that never allows an eviction guards a pod on the node, so a drain cannot finish.
    case pdbBlocksEviction = "pdb-blocks-eviction"
    /// A PodDisruptionBudget that allows no eviction NOW but could later (one of its two pods is not Ready:
    /// desiredHealthy 1 < expectedPods 2, disruptionsAllowed 0), so a drain waits on it (429s) instead of being
    /// refused at once; clearing it lets the drain finish.
    case pdbHoldsEviction = "pdb-holds-eviction"
    /// Generations built from now on have a kernel that never boots: the machine hangs at the reboot into one.
    /// With a trial-boot loader the one-shot entry is spent and a reset boots the previous generation; clearing
    /// the fault is that reset.
    case kernelDoesNotBoot = "kernel-does-not-boot"
}

/// Why the simulated cluster could not do something.
public struct SimulationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable codes.
    public enum Code: String, Sendable, Hashable {
        /// A parameter is out of range (node count, server count).
        case invalidArgument = "invalid_argument"
        /// No node with that name.
        case unknownNode = "unknown_node"
        /// Setting up the simulation failed (PKI, files, servers).
        case setup
    }

    /// What went wrong.
    public var code: Code
    /// What went wrong and how to fix it.
    public var message: String

    /// Makes an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "[simulation] \(message)" }
}
