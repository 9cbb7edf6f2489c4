import Foundation
import NK3Protocol

/// One step of a node's pipeline. Also the `phase` recorded in progress and named in failures.
public enum RolloutStep: String, Codable, Sendable, Hashable, CaseIterable {
    /// Submit the signed apply envelope.
    case send
    /// Wait for the agent's `nixos-rebuild` result.
    case rebuild
    /// Cordon (recorded as nk3's) and evict.
    case drain
    /// Ask the agent to reboot.
    case reboot
    /// Wait until the agent answers with a new boot id.
    case waitReachable = "wait-reachable"
    /// Wait until kubelet is Ready.
    case waitReady = "wait-ready"
    /// Uncordon, if nk3 cordoned it.
    case uncordon
    /// All health gates pass (Ceph fresh since the node came back).
    case gates
    /// Send the signed confirm: the agent keeps the new generation.
    case confirm

    /// The output phase for this step.
    public var phase: RolloutPhase {
        switch self {
        case .send: return .send
        case .rebuild: return .rebuild
        case .drain: return .drain
        case .reboot: return .reboot
        case .waitReachable: return .reachable
        case .waitReady: return .ready
        case .uncordon: return .uncordon
        case .gates: return .gates
        case .confirm: return .confirm
        }
    }
}

/// What a rollout does to every node that needs it.
public struct RolloutPlan: Sendable, Hashable {
    /// The kind of rollout.
    public enum Kind: String, Sendable, Hashable {
        /// Ship each node's bundle (its `action`: `boot` → drain/reboot, `switch` → live) and confirm it.
        case apply
        /// No configuration change: drain → reboot → new boot id → Ready → uncordon → gates.
        case reboot
    }

    /// One node of the cluster (every inventory node, in inventory order).
    public struct Node: Sendable, Hashable {
        /// Node name: the inventory hostname, the Kubernetes node name and the agent's envelope target.
        public var name: String
        /// A k3s server (etcd member): counts against quorum.
        public var isServer: Bool
        /// The bundle to apply (kind `apply`); nil for a `reboot` rollout.
        public var bundle: ApplyBundle?

        /// Makes a node entry.
        public init(name: String, isServer: Bool, bundle: ApplyBundle?) {
            self.name = name
            self.isServer = isServer
            self.bundle = bundle
        }

        /// `ConfigFiles.hash` of the bundle's files: compared with what the agent reports as landed.
        public var desiredHash: String? { bundle.map { ConfigFiles.hash(files: $0.files) } }
    }

    /// Knobs.
    public struct Options: Sendable, Hashable {
        /// Most nodes in flight (sent … confirmed) at once. Default 1. With more than 1: a node starts only
        /// after the health gates passed with no node disrupted since; gates run only while no node is between
        /// drain and uncordon; a node waits to drain while a gate run is due. Servers additionally obey
        /// `maxServersDown` (etcd quorum).
        public var disruptionBudget: Int
        /// Skip the health gates before the first node (they still run after every node).
        public var skipInitialHealth: Bool
        /// Node names to roll first, in this order; the rest follow in the default order
        /// (non-servers before servers, then inventory order).
        public var explicitOrder: [String]?
        /// Allow taking a k3s server down even when that loses etcd quorum (1- or 2-server clusters),
        /// one server at a time. Without it such a rollout is refused before anything is touched.
        public var allowQuorumLoss: Bool
        /// Also roll nodes someone else cordoned (drained, rebooted, and left cordoned). Without it they are
        /// skipped with a line saying so, and named again at the end.
        public var includeCordoned: Bool
        /// Do not look for drain blockers before the first node (`DrainPreflight`); a drain then meets them
        /// node by node.
        public var skipDrainPreflight: Bool

        /// Makes options.
        public init(
            disruptionBudget: Int = 1, skipInitialHealth: Bool = false, explicitOrder: [String]? = nil,
            allowQuorumLoss: Bool = false, includeCordoned: Bool = false, skipDrainPreflight: Bool = false
        ) {
            self.skipDrainPreflight = skipDrainPreflight
            self.disruptionBudget = disruptionBudget
            self.skipInitialHealth = skipInitialHealth
            self.explicitOrder = explicitOrder
            self.allowQuorumLoss = allowQuorumLoss
            self.includeCordoned = includeCordoned
        }
    }

    /// Apply bundles, or reboot only.
    public var kind: Kind
    /// Every node of the cluster in inventory order (servers are counted for quorum even if unchanged).
    public var nodes: [Node]
    /// Budget, order, health and quorum knobs.
    public var options: Options

    /// Makes a plan.
    public init(kind: Kind, nodes: [Node], options: Options = Options()) {
        self.kind = kind
        self.nodes = nodes
        self.options = options
    }

    /// Whether any node of this plan may be drained (a reboot rollout, or a `boot` apply).
    public var drainsNodes: Bool { kind == .reboot || nodes.contains { $0.bundle?.action == .boot } }

    /// Whether bundles ask for `--upgrade` (output then says "No upgrade needed on X").
    public var isUpgrade: Bool { nodes.contains { $0.bundle?.upgrade == true } }

    /// k3s servers that may be down at once without losing etcd quorum: ⌊(servers − 1) / 2⌋
    /// (quorum is n/2 + 1; three servers survive one down, two survive none —
    /// https://docs.k3s.io/datastore/ha-embedded).
    public var maxServersDown: Int { max(0, (nodes.filter(\.isServer).count - 1) / 2) }

    /// Identifies this plan's content: a resumed run only trusts "done" records made by the same plan.
    public var fingerprint: String {
        var parts: [String: String] = ["kind": kind.rawValue]
        for n in nodes {
            if let b = n.bundle {
                parts["node:" + n.name] =
                    "\(ConfigFiles.hash(files: b.files)) \(b.action.rawValue) upgrade=\(b.upgrade) \(b.nixChannel ?? "")"
            } else {
                parts["node:" + n.name] = "reboot"
            }
        }
        return ConfigFiles.hash(files: parts)
    }

    /// The processing order: explicit names first, then non-servers before servers, each in inventory order.
    public func order() -> [String] {
        let explicit = options.explicitOrder ?? []
        let listed = Set(explicit)
        let rest = nodes.filter { !listed.contains($0.name) }
        return explicit + rest.filter { !$0.isServer }.map(\.name) + rest.filter(\.isServer).map(\.name)
    }

    /// The first problem with this plan, if any (exit code 2, nothing touched).
    public func validationProblem() -> String? {
        if nodes.isEmpty { return "the plan has no nodes" }
        if options.disruptionBudget < 1 {
            return "disruption budget \(options.disruptionBudget) must be at least 1"
        }
        var seen = Set<String>()
        for n in nodes {
            if !seen.insert(n.name).inserted { return "node \(n.name) appears twice in the plan" }
            switch kind {
            case .apply:
                guard let b = n.bundle else { return "node \(n.name) has no bundle in an apply rollout" }
                if let p = b.validationProblem() { return "bundle for \(n.name): \(p)" }
            case .reboot:
                if n.bundle != nil { return "node \(n.name) has a bundle in a reboot rollout" }
            }
        }
        if let explicit = options.explicitOrder {
            var listed = Set<String>()
            for name in explicit {
                if !seen.contains(name) { return "--order names \(name), which is not in the inventory" }
                if !listed.insert(name).inserted { return "--order names \(name) twice" }
            }
        }
        return nil
    }
}

/// How an apply's rebuild ended, as the executor read it from the agent.
public enum RebuildOutcome: Sendable, Hashable {
    /// Nothing changed (same system): no drain, no confirm.
    case unchanged(message: String)
    /// Rebuilt; the agent awaits a confirm. `bootIDAtRebuild`: the boot id when the rebuild finished.
    case awaitingConfirm(bootIDAtRebuild: String?)
    /// The agent committed by itself (no confirm needed).
    case committed
    /// `nixos-rebuild` failed; the agent restored the previous files.
    case failed(message: String)
    /// The agent rolled the apply back.
    case rolledBack(message: String)
}

extension RebuildOutcome {
    /// Whether the rebuild ran to the end, so an `--upgrade` has fetched the channel.
    var fetchedChannel: Bool {
        switch self {
        case .unchanged, .awaitingConfirm, .committed: return true
        case .failed, .rolledBack: return false
        }
    }
}

/// What a finished rollout did.
public struct RolloutSummary: Sendable, Hashable {
    /// Nodes changed and confirmed (or rebooted), in the order they finished.
    public var updated: [String] = []
    /// Nodes that needed nothing.
    public var unchanged: [String] = []
    /// Nodes skipped because an interrupted run of the same plan had finished them.
    public var alreadyDone: [String] = []
    /// Nodes nk3 had left cordoned (a killed or failed run) and brought back.
    public var recovered: [String] = []
    /// Nodes skipped because someone else had cordoned them (see `Options.includeCordoned`).
    public var skippedCordoned: [String] = []
    /// Kernel releases that changed: node → (before, after).
    public var kernelChanges: [String: KernelChange] = [:]

    /// A kernel release change on one node.
    public struct KernelChange: Sendable, Hashable {
        /// Release before the reboot.
        public var from: String
        /// Release after the reboot.
        public var to: String
        /// Makes a record.
        public init(from: String, to: String) {
            self.from = from
            self.to = to
        }
    }

    /// An empty summary.
    public init() {}
}
