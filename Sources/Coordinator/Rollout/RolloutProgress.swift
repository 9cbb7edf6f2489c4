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

    /// Makes a record.
    public init(version: Int = 1, planFingerprint: String, done: [String: String] = [:], inFlight: [String: InFlight] = [:]) {
        self.version = version
        self.planFingerprint = planFingerprint
        self.done = done
        self.inFlight = inFlight
    }
}
