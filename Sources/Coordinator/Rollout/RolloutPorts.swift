import Foundation
import NK3Protocol

// The narrow seams the rollout executor drives. ClusterSession adapts the real agent client and Kubernetes client to
// these; tests use in-memory fakes. Keep them small: everything here must be fakeable in a few lines.

/// The agents of one cluster, addressed by node name (the inventory hostname).
public protocol RolloutAgents: Sendable {
    /// `GET /v1/status` of the node's agent. Throws when the agent cannot be reached.
    func status(node: String) async throws -> AgentStatus
    /// Signs `command` for `node` with the next serial and submits it; returns the agent's receipt.
    /// Serial bookkeeping (strictly increasing per node) lives behind this call.
    func submit(node: String, command: Command) async throws -> EnvelopeReceipt
    /// `GET /v1/operations/ID`: an apply's phase, result and rebuild log tail.
    func operation(node: String, id: String) async throws -> OperationReport
    /// The same as a long poll: while the apply is still being applied, the agent answers once it is not, or
    /// after `waitUpTo` (an agent that cannot wait answers at once; so does the default implementation).
    func operation(node: String, id: String, waitUpTo: Duration) async throws -> OperationReport
}

extension RolloutAgents {
    public func operation(node: String, id: String, waitUpTo: Duration) async throws -> OperationReport {
        try await operation(node: node, id: id)
    }
}

/// The Kubernetes side of one cluster, as the rollout needs it.
public protocol RolloutCluster: Sendable {
    /// Whether the node's `Ready` condition is `True` (kubelet posting ready status) — and, when `boot` is
    /// given (nk3 rebooted the node), posted by the kubelet of that boot: `status.nodeInfo.bootID` equals the
    /// boot id the agent reported after coming back (or, where the API shows no boot id, the Ready heartbeat
    /// is later than `boot.since`). Right after a quick reboot the Node still says Ready=True from before it.
    func nodeReadiness(_ node: String, boot: NodeBoot?) async throws -> NodeReadiness
    /// Cordons the node and records, in an annotation, that nk3 did it and why. A node that somebody else
    /// had already cordoned is left as it is and NOT marked as nk3's (so nk3 never uncordons it).
    func cordon(_ node: String, reason: String) async throws
    /// Uncordons the node only if nk3's annotation says nk3 cordoned it (then removes the annotation).
    /// Returns whether it uncordoned.
    func uncordonIfOurs(_ node: String) async throws -> Bool
    /// Who holds each cordoned node: nk3 (its annotation, with the recorded reason) or someone else. nk3's
    /// annotations left on a node that is schedulable again (`kubectl uncordon` keeps annotations) are stale:
    /// they are removed, so that a later cordon by a person is never taken for nk3's.
    func cordons() async throws -> NodeCordons
    /// Every pod on `nodes` that would stop a drain for good (`DrainPreflight`'s rules), and the pods under a
    /// budget whose dry-run eviction the API server refuses now (`DrainPreflight.apiBlocker`), read before
    /// anything is touched.
    func drainBlockers(nodes: [String]) async throws -> [DrainBlocker]
    /// Evicts the node's pods (Eviction API, PDB 429s retried with backoff, DaemonSet pods skipped) and
    /// returns when none are left; throws, naming the blocking PDB, when `timeout` passes.
    func drain(_ node: String, timeout: Duration) async throws
    /// Runs every health gate until all pass (returns) or `timeout` passes (throws, naming the failing gate).
    /// Ceph health counts only when checked after `since`. Each human line ("1 daemonsets recovering in
    /// namespace default", "ceph state is HEALTH_OK") is passed to `report` as it happens.
    func runGates(
        since: Date?, timeout: Duration, report: @escaping @Sendable (GateReport) -> Void
    ) async throws
    /// Takes the cluster's rollout Lease for `holder` for `ttl`. If another holder's lease has not expired,
    /// throws `RolloutLeaseHeld` (fail fast, no waiting). Re-acquiring one's own lease succeeds.
    func acquireLease(holder: String, ttl: Duration) async throws -> RolloutLease
    /// Renews the lease; throws `RolloutLeaseHeld` if another holder took it (it had expired).
    func renewLease(holder: String, ttl: Duration) async throws -> RolloutLease
    /// Gives the lease up (only if `holder` still holds it).
    func releaseLease(holder: String) async throws
    /// Stores the rollout's progress (e.g. in a ConfigMap or on the Lease) so a rerun can resume.
    func saveProgress(_ progress: RolloutProgress) async throws
    /// The progress stored by the last run, if any.
    func loadProgress() async throws -> RolloutProgress?
    /// Forgets the progress (after a rollout finished).
    func clearProgress() async throws
    /// Called just before nk3 asks `node` to reboot: a k3s server's API goes down with it, so a client using it
    /// moves to another server first. Returns a line to show when it moved (or could not), else nil.
    func prepareReboot(_ node: String) async -> GateReport?
}

extension RolloutCluster {
    /// Nothing to prepare: one API server, or none on the node.
    public func prepareReboot(_ node: String) async -> GateReport? { nil }
}

/// The boot a node's Ready must come from: the one its agent reported after nk3 rebooted it.
public struct NodeBoot: Sendable, Hashable {
    /// The agent's boot id after the reboot (`/proc/sys/kernel/random/boot_id`, which the kubelet reports
    /// as `status.nodeInfo.bootID`).
    public var bootID: String
    /// When nk3 saw the agent back with it: a Ready heartbeat after this can only come from the new boot.
    public var since: Date?

    /// Makes a boot record.
    public init(bootID: String, since: Date?) {
        self.bootID = bootID
        self.since = since
    }
}

/// What the Kubernetes API says about a node's readiness.
public enum NodeReadiness: Sendable, Hashable {
    /// Ready=True (from the boot asked about).
    case ready
    /// Ready is not True: its status and reason, e.g. `Unknown/NodeStatusUnknown`.
    case notReady(String)
    /// Ready=True, but posted before the reboot: the API still shows boot id `apiBootID` (nil: none, and no
    /// heartbeat since the node came back). The kubelet of the new boot has not reported yet.
    case previousBoot(apiBootID: String?)
}

/// The cordoned nodes of a cluster, by who cordoned them.
public struct NodeCordons: Sendable, Hashable {
    /// Nodes nk3 cordoned → the reason it recorded.
    public var byNK3: [String: String]
    /// Nodes someone else cordoned → who, where the API says (else empty).
    public var byOthers: [String: String]

    /// Makes a record.
    public init(byNK3: [String: String] = [:], byOthers: [String: String] = [:]) {
        self.byNK3 = byNK3
        self.byOthers = byOthers
    }
}

/// One line of health-gate output.
public struct GateReport: Sendable, Hashable {
    /// `ok` (healthy), `waiting` (recovering), `warning`, or `info`.
    public var status: RolloutEventStatus
    /// The human line, e.g. "4 daemonsets healthy in namespace kube-system".
    public var message: String
    /// The node it is about, if any ("kubelet is ready on X").
    public var node: String?

    /// Makes a gate line.
    public init(status: RolloutEventStatus, message: String, node: String? = nil) {
        self.status = status
        self.message = message
        self.node = node
    }
}

/// A held rollout Lease (coordination.k8s.io/v1, docs/UPSTREAM.md#lease).
public struct RolloutLease: Sendable, Hashable {
    /// `spec.holderIdentity`.
    public var holder: String
    /// When it expires unless renewed (`renewTime + leaseDurationSeconds`).
    public var expiresAt: Date

    /// Makes a lease record.
    public init(holder: String, expiresAt: Date) {
        self.holder = holder
        self.expiresAt = expiresAt
    }
}

/// Thrown by `acquireLease`/`renewLease` when another coordinator holds the lease.
public struct RolloutLeaseHeld: Error, Sendable, Hashable, RolloutClassifiedError, CustomStringConvertible {
    /// Who holds it (`spec.holderIdentity`).
    public var holder: String
    /// When it expires unless its holder renews it.
    public var expiresAt: Date

    /// Makes the error.
    public init(holder: String, expiresAt: Date) {
        self.holder = holder
        self.expiresAt = expiresAt
    }

    /// Always `.lockHeld` (exit 7).
    public var rolloutFailureKind: RolloutFailure.Kind { .lockHeld }

    public var description: String {
        "another rollout holds the cluster's lease: holder \(holder), expires at \(RolloutTimestamp.format(expiresAt))"
    }
}
