import Foundation
import NK3Protocol

/// What a rollout has done so far, stored through `RolloutCluster.saveProgress` before every step that
/// touches a node, so that a rerun after a killed coordinator resumes instead of guessing.
public struct RolloutProgress: Codable, Sendable, Hashable {
    /// Format version of this record.
    public var version: Int
    /// `RolloutPlan.fingerprint` of the run that wrote it. "Done" records count only for the same plan.
    public var planFingerprint: String
    /// Finished nodes → the config hash they reported when finished (nil for reboot rollouts).
    public var done: [String: String]
    /// Nodes in flight.
    public var inFlight: [String: InFlight]

    /// One node in flight.
    public struct InFlight: Codable, Sendable, Hashable {
        /// The step being carried out (saved before it starts).
        public var step: RolloutStep
        /// Serial of the accepted apply envelope (what a confirm names).
        public var applySerial: UInt64?
        /// The agent's operation id for that apply.
        public var operationID: String?
        /// The node's boot id just before nk3 rebooted it.
        public var bootIDBeforeReboot: String?
        /// The kernel release before the reboot.
        public var kernelBefore: String?

        /// Makes a record.
        public init(
            step: RolloutStep, applySerial: UInt64? = nil, operationID: String? = nil,
            bootIDBeforeReboot: String? = nil, kernelBefore: String? = nil
        ) {
            self.step = step
            self.applySerial = applySerial
            self.operationID = operationID
            self.bootIDBeforeReboot = bootIDBeforeReboot
            self.kernelBefore = kernelBefore
        }
    }

    /// What a rerun acts on (`RolloutMachine`'s classification of each node, and the session's wait for nodes that
    /// were rebooting): each in-flight step reduced to its resume class — `send`/`rebuild` → `rebuild`, `drain`,
    /// `reboot`/`wait-reachable` → `reboot`, and `wait-ready`/`uncordon`/`gates`/`confirm` → `wait-ready` — and a
    /// record that carries nothing yet (just sent, no serial) dropped, as a rerun treats it like no record.
    /// Progress is written only when this view changes, so the stored step is the first of its class that the
    /// node reached (a node at `gates` may read `wait-ready`); boot-apply nodes cost 4 writes instead of 10.
    ///
    /// A `drain` record of an apply (one with the apply's serial) reads `rebuild`: it carries nothing the rebuild
    /// record lacks (the boot id and kernel before the reboot are recorded with `reboot`), and a rerun of an apply
    /// never asks for `drain`: it resumes such a node by what its agent reports (the apply still open, awaiting its
    /// confirm) and whether nk3's cordon is on the node, which it reads from the API either way
    /// (`RolloutMachine.classify`, steps 1 and 4). Only a reboot rollout's record, which has no serial, tells a
    /// rerun that the drain began (`classify`, step 3), so it is still written.
    public var resumeView: RolloutProgress {
        var view = self
        view.inFlight = inFlight.compactMapValues { record in
            var r = record
            r.step = r.step.resumeClass
            if r.step == .drain, r.applySerial != nil { r.step = .rebuild }
            return r == InFlight(step: .rebuild) ? nil : r
        }
        return view
    }

    /// Makes a record.
    public init(version: Int = 1, planFingerprint: String, done: [String: String] = [:], inFlight: [String: InFlight] = [:]) {
        self.version = version
        self.planFingerprint = planFingerprint
        self.done = done
        self.inFlight = inFlight
    }
}

extension RolloutStep {
    /// The first step of the class of steps a rerun does not tell apart (see `RolloutProgress.resumeView`).
    var resumeClass: RolloutStep {
        switch self {
        case .send, .rebuild: return .rebuild
        case .drain: return .drain
        case .reboot, .waitReachable: return .reboot
        case .waitReady, .uncordon, .gates, .confirm: return .waitReady
        }
    }
}
