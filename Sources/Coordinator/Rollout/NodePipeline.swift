import Foundation
import NK3Protocol

/// Which steps a node goes through. There is one full sequence — `RolloutStep.allCases`, in pipeline order:
/// send → rebuild → drain → reboot → wait-reachable → wait-ready → uncordon → gates → confirm — and every
/// node's list is that sequence filtered by what its rollout does; a resumed node's list is a suffix of one.
/// So no list of steps is ever written out by hand.
struct NodePipeline: Sendable, Hashable {
    /// Ships a bundle: send, rebuild, confirm.
    var ships: Bool
    /// Takes the machine down: drain, reboot, wait-reachable.
    var reboots: Bool
    /// Undoes nk3's cordon: uncordon.
    var uncordons: Bool

    /// The pipeline of a node of a `kind` rollout whose bundle (if any) has `action`: a `boot` apply and a
    /// `reboot` rollout drain and reboot (so they uncordon); a `switch` apply does neither.
    static func full(kind: RolloutPlan.Kind, action: RebuildAction?) -> NodePipeline {
        switch kind {
        case .reboot: return NodePipeline(ships: false, reboots: true, uncordons: true)
        case .apply:
            let boots = action == .boot
            return NodePipeline(ships: true, reboots: boots, uncordons: boots)
        }
    }

    /// Bringing back a node an earlier run left cordoned: Ready, then uncordon, then the gates.
    static var recovery: NodePipeline { NodePipeline(ships: false, reboots: false, uncordons: true) }

    /// Whether the pipeline goes through `step`.
    func includes(_ step: RolloutStep) -> Bool {
        switch step {
        case .send, .rebuild, .confirm: return ships
        case .drain, .reboot, .waitReachable: return reboots
        case .uncordon: return uncordons
        case .waitReady, .gates: return true
        }
    }

    /// Every step, in order.
    var steps: [RolloutStep] { RolloutStep.allCases.filter(includes) }

    /// `step` and every step after it; the whole pipeline if it does not go through `step`.
    func steps(from step: RolloutStep) -> [RolloutStep] {
        let all = steps
        guard let i = all.firstIndex(of: step) else { return all }
        return Array(all[i...])
    }
}

/// One node in flight: where it is in its pipeline and what the machine learned about it so far.
struct NodeRun: Sendable, Hashable {
    /// What a recovered node (left cordoned by an earlier run) does once it is back.
    enum After: Sendable, Hashable { case finish, pending, unchanged, alreadyDone }
    var name: String
    var isServer: Bool
    var steps: [RolloutStep]
    var index = 0
    /// The current step's action was handed out and its answer is outstanding.
    var issued = false
    /// Between entering a disruptive step and leaving the last one.
    var inDisruption = false
    /// Recovering a node a previous run left cordoned; `after` says what follows.
    var recovering = false
    var after: After = .finish
    var action: RebuildAction?
    var applySerial: UInt64?
    var operationID: String?
    var bootIDBeforeReboot: String?
    var kernelBefore: String?
    var kernelAfter: String?
    /// The boot the agent came back with after nk3's reboot: kubelet Ready must come from it.
    var bootAfterReboot: NodeBoot?
    var backAt: Date?
    /// The last look for the rebooted agent found it answering with its old boot id.
    var sawOldBootID = false
    /// The node's agent reported a trial boot before the reboot: a node that does not come back boots the
    /// previous generation at its next reset.
    var trialBoot = false
    var cordonedByUs = false
    var confirmed = false
    /// Started by this run from its first step (not resumed or brought back): its first action starts it,
    /// and only such a node waits for the maintenance window and the alert gate.
    var fresh = false

    /// A run of `node` through `steps` (set later when nil).
    init(node: RolloutPlan.Node, steps: [RolloutStep] = []) {
        name = node.name
        isServer = node.isServer
        self.steps = steps
        action = node.bundle?.action
    }

    var current: RolloutStep? { index < steps.count ? steps[index] : nil }

    /// Whether `step` takes the node (or its workloads) down.
    func isDisruptive(_ step: RolloutStep) -> Bool {
        switch step {
        case .drain, .reboot, .waitReachable, .waitReady, .uncordon: return true
        case .send, .rebuild: return action == .switch || action == .test
        case .gates, .confirm: return false
        }
    }

    /// Moves to the next step; leaving the disruptive ones ends the disruption.
    mutating func advance() {
        index += 1
        issued = false
        if let next = current, !isDisruptive(next) { inDisruption = false }
    }
}
