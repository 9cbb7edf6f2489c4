import Foundation

/// Why a rollout stopped: one message naming the node, the phase and the cause, and a kind that maps to the
/// process exit code.
public struct RolloutFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as scripts see it. `exitCode` is the one table of nk3's exit codes.
    public enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
        /// Bad inventory, plan or options (exit 2). Nothing was touched.
        case invalidInput = "invalid_input"
        /// An agent did not answer, or did not come back after a reboot (exit 3).
        case unreachable
        /// `nixos-rebuild` failed on a node; its agent restored the previous configuration (exit 4).
        case rebuildFailed = "rebuild_failed"
        /// A wait ran out: kubelet Ready, health gates, drain, rebuild, or a reboot that never happened (exit 5).
        case timeout
        /// A node's agent rolled back the change (confirm deadline, failed boot) (exit 6).
        case rolledBack = "rolled_back"
        /// Another coordinator holds the cluster's rollout Lease (exit 7).
        case lockHeld = "lock_held"
        /// A drain was refused: pods that would be lost, or a PodDisruptionBudget that does not allow the eviction
        /// (exit 8). The node stays cordoned.
        case drainRefused = "drain_refused"
        /// `--no-wait`: the next node would have started outside the maintenance window; the rollout stopped
        /// before it, and a rerun inside the window resumes (exit 9).
        case outsideWindow = "outside_window"
        /// Anything else: an agent or the Kubernetes API refused a request, an internal error (exit 1).
        case other

        /// The process exit code for this kind of failure.
        public var exitCode: Int32 {
            switch self {
            case .other: return 1
            case .invalidInput: return 2
            case .unreachable: return 3
            case .rebuildFailed: return 4
            case .timeout: return 5
            case .rolledBack: return 6
            case .lockHeld: return 7
            case .drainRefused: return 8
            case .outsideWindow: return 9
            }
        }

        /// One line of the exit-code table.
        public var summary: String {
            switch self {
            case .other: return "other error (request refused, internal error)"
            case .invalidInput: return "invalid input (inventory, plan, options); nothing was touched"
            case .unreachable: return "an agent or the Kubernetes API is unreachable, or a node did not come back after a reboot"
            case .rebuildFailed: return "nixos-rebuild failed; the node's previous configuration was restored"
            case .timeout: return "timed out waiting for kubelet Ready, health gates, a drain or a reboot"
            case .rolledBack: return "a node's agent rolled the change back"
            case .lockHeld: return "another rollout holds the cluster's lease"
            case .drainRefused: return "a drain was refused (unreplicated pods, a disruption budget that does not allow it)"
            case .outsideWindow: return "--no-wait: stopped before the next node, outside the maintenance window (rerun inside it to resume)"
            }
        }
    }

    /// The exit-code table, for `--help` and the README.
    public static var exitCodeTable: String {
        let rows = [(Int32(0), "success")] + Kind.allCases.sorted { $0.exitCode < $1.exitCode }.map { ($0.exitCode, $0.summary) }
        return rows.map { "  \($0.0)  \($0.1)" }.joined(separator: "\n")
    }

    /// What went wrong (decides the exit code).
    public var kind: Kind
    /// The node where it failed, if the failure is about one node.
    public var node: String?
    /// The phase that failed (`drain`, `wait-ready`, `gates`, …), if any.
    public var step: RolloutStep?
    /// The cause alone, e.g. "kubelet did not become Ready within 10m".
    public var cause: String
    /// What the rollout knew about the state it stopped in (nil: a failure outside the rollout machine).
    public var situation: Situation?
    /// The whole message printed to the operator: node, phase, cause, and what state things were left in.
    public var message: String

    /// Makes a failure; `message` defaults to one built from the others.
    public init(kind: Kind, node: String? = nil, step: RolloutStep? = nil, cause: String, message: String? = nil) {
        self.kind = kind
        self.node = node
        self.step = step
        self.cause = cause
        self.message = message ?? Self.defaultMessage(node: node, step: step, cause: cause)
    }

    /// Makes a failure whose message `RolloutMessages` writes from `situation`.
    public init(kind: Kind, node: String? = nil, step: RolloutStep? = nil, cause: String, situation: Situation) {
        self.init(kind: kind, node: node, step: step, cause: cause, message: nil)
        self.situation = situation
        self.message = RolloutMessages.message(for: self, in: situation)
    }

    /// The state a rollout stopped in, as facts: the rollout machine reports these, and `RolloutMessages`
    /// turns them into what the operator reads (and names the flags and commands that help).
    public enum Situation: Sendable, Hashable {
        /// The plan or its options were refused; nothing was started.
        case invalidPlan
        /// Agents did not answer before the rollout started (`node (why)`, in rollout order).
        case agentsUnreachable([String])
        /// A k3s server needs a restart, but with `servers` servers etcd loses quorum while one is down.
        case quorumAtRisk(servers: Int)
        /// Drains would be refused (pods no controller manages, budgets that never allow an eviction).
        case drainBlocked([DrainBlocker])
        /// The node's agent is rolling an apply back (its confirm deadline passed while no coordinator ran).
        case agentRollingBack(serial: UInt64)
        /// A node failed during a step.
        case nodeFailed(NodeAftermath)
        /// The health gates failed. `waiting`: the nodes whose gates they were; `updated`: nodes done before.
        case gatesFailed(waiting: [String], updated: [String])
        /// The machine met an input it did not expect (a bug in nk3).
        case internalError
    }

    /// What a node's failure left behind.
    public struct NodeAftermath: Sendable, Hashable {
        /// An apply nk3 did not confirm: the agent rolls it back at its confirm deadline.
        public var unconfirmedSerial: UInt64?
        /// The node stays cordoned by nk3 (its annotation records why).
        public var leftCordoned: Bool
        /// Other nodes still in flight.
        public var alsoInFlight: [String]

        /// Makes an aftermath record.
        public init(unconfirmedSerial: UInt64?, leftCordoned: Bool, alsoInFlight: [String]) {
            self.unconfirmedSerial = unconfirmedSerial
            self.leftCordoned = leftCordoned
            self.alsoInFlight = alsoInFlight
        }
    }

    /// Exit code for this failure.
    public var exitCode: Int32 { kind.exitCode }

    public var description: String { message }

    static func defaultMessage(node: String?, step: RolloutStep?, cause: String) -> String {
        switch (node, step) {
        case let (n?, s?): return "rollout aborted on \(n) during \(s.rawValue): \(cause)"
        case let (n?, nil): return "rollout aborted on \(n): \(cause)"
        case let (nil, s?): return "rollout aborted during \(s.rawValue): \(cause)"
        case (nil, nil): return "rollout aborted: \(cause)"
        }
    }
}

/// An error a port adapter throws when it knows which failure kind (exit code) it means; any other error is
/// classified by where it happened (agent calls → unreachable, gates → timeout, otherwise other).
public protocol RolloutClassifiedError: Error {
    /// The failure kind the rollout reports for this error.
    var rolloutFailureKind: RolloutFailure.Kind { get }
}
