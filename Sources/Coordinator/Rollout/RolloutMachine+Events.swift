import Foundation
import NK3Protocol

// The machine's vocabulary: what it asks the executor to do (`Action`), what the executor reports back
// (`Input`), and what the executor learned before the first action (`Start`). The transitions are in
// RolloutMachine.swift.
extension RolloutMachine {
    /// What the executor must do next. Node actions may run concurrently (one per node at a time).
    public enum Action: Sendable, Hashable {
        /// Tell people (human line / JSON event).
        case notify(RolloutNotice)
        /// Store progress before the actions that follow in the same batch.
        case saveProgress(RolloutProgress)
        /// Submit the signed apply envelope. Answer `.bundleAccepted`.
        case sendBundle(node: String, bundle: ApplyBundle)
        /// Poll the apply until it finished rebuilding. Answer `.rebuildFinished` (or `.timedOut`).
        case waitRebuild(node: String, operationID: String?, applySerial: UInt64?)
        /// Cordon (as nk3's) and drain; then read the agent's status. Answer `.drained`.
        case drain(node: String)
        /// Ask the agent to reboot. Answer `.rebootIssued`.
        case reboot(node: String)
        /// Poll the agent's status, ignoring errors, until it answers. Answer `.agentReachable` with that status
        /// (the machine decides whether the boot id is new and may ask again), or `.timedOut`. `sawOldBootID`:
        /// the last look found the agent answering with `oldBootID`; then answer `.agentWentDown` at the first
        /// look that finds no agent (the machine is going down) instead of polling on.
        case waitReachable(node: String, oldBootID: String?, sawOldBootID: Bool)
        /// Poll kubelet Ready until true — after a reboot, Ready posted by the kubelet of `boot`. Answer
        /// `.nodeReady` or `.timedOut`.
        case waitReady(node: String, boot: NodeBoot?)
        /// Uncordon if nk3 cordoned it. Answer `.uncordoned`.
        case uncordon(node: String)
        /// Run every health gate; Ceph only counts if checked after `since`. Answer `.gatesPassed`.
        case runGates(since: Date?)
        /// Submit the signed confirm for the apply with `applySerial`. Answer `.confirmed`.
        case confirm(node: String, applySerial: UInt64)
        /// Stop: the rollout failed. Nothing else follows.
        case abort(RolloutFailure)
        /// Stop: every node is done.
        case done(RolloutSummary)
    }

    /// What happened, as reported by the executor.
    public enum Input: Sendable, Hashable {
        case bundleAccepted(node: String, receipt: EnvelopeReceipt)
        case rebuildFinished(node: String, outcome: RebuildOutcome, at: Date)
        /// Drained; `status` is the agent's status right before the reboot (boot id, kernel).
        case drained(node: String, status: AgentStatus)
        case rebootIssued(node: String)
        /// The agent answered; `at` is when.
        case agentReachable(node: String, status: AgentStatus, at: Date)
        /// After answering with its old boot id, the agent stopped answering: the machine went down.
        case agentWentDown(node: String)
        case nodeReady(node: String, at: Date)
        case uncordoned(node: String, wasOurs: Bool, at: Date)
        case gatesPassed(at: Date)
        case confirmed(node: String)
        /// A node's first step was not carried out: the start policy refused it (`--no-wait` outside the
        /// maintenance window). The node goes back to waiting, no other node starts, and once the nodes in
        /// flight have finished the rollout stops with `failure`.
        case startRefused(node: String, failure: RolloutFailure)
        /// A step failed (node nil for gates).
        case failed(node: String?, step: RolloutStep, kind: RolloutFailure.Kind, cause: String)
        /// A wait ran out (node nil for gates).
        case timedOut(node: String?, step: RolloutStep, after: Duration)
    }

    /// What the executor learned before the first action: the agents' status, nk3's cordons, saved progress.
    public struct Start: Sendable, Hashable {
        /// Status of every agent that answered.
        public var statuses: [String: AgentStatus]
        /// Agents that did not answer → why.
        public var unreachable: [String: String]
        /// Nodes cordoned by nk3 (annotation) → recorded reason.
        public var cordonedByNK3: [String: String]
        /// Nodes someone else cordoned → who (or empty): skipped unless `Options.includeCordoned`.
        public var cordonedByOthers: [String: String]
        /// Progress saved by an earlier run, if any.
        public var progress: RolloutProgress?
        /// Pods that would stop a node's drain for good (empty when the preflight is skipped).
        public var drainBlockers: [DrainBlocker] = []
        /// When the rollout started (Ceph must be fresh after this for recovered nodes).
        public var at: Date

        /// Makes a start snapshot.
        public init(
            statuses: [String: AgentStatus], unreachable: [String: String] = [:],
            cordonedByNK3: [String: String] = [:], cordonedByOthers: [String: String] = [:],
            progress: RolloutProgress? = nil, at: Date, drainBlockers: [DrainBlocker] = []
        ) {
            self.drainBlockers = drainBlockers
            self.statuses = statuses
            self.unreachable = unreachable
            self.cordonedByNK3 = cordonedByNK3
            self.cordonedByOthers = cordonedByOthers
            self.progress = progress
            self.at = at
        }
    }
}
