import Foundation

/// The resource types the fake Kubernetes API serves (SIMULATION), with their group, version and kind as
/// discovery reports them.
public enum FakeKubeResource: String, Sendable, Hashable, CaseIterable {
    /// `v1` nodes (cluster-scoped).
    case nodes
    /// `v1` pods.
    case pods
    /// `apps/v1` daemonsets.
    case daemonsets
    /// `apps/v1` deployments.
    case deployments
    /// `policy/v1` poddisruptionbudgets (status derived from pods).
    case poddisruptionbudgets
    /// `ceph.rook.io/v1` cephclusters.
    case cephclusters
    /// `coordination.k8s.io/v1` leases.
    case leases

    /// API group ("" for core).
    public var group: String {
        switch self {
        case .nodes, .pods: return ""
        case .daemonsets, .deployments: return "apps"
        case .poddisruptionbudgets: return "policy"
        case .cephclusters: return "ceph.rook.io"
        case .leases: return "coordination.k8s.io"
        }
    }
    /// Version (always v1 here).
    public var version: String { "v1" }
    /// `group/version` or `v1`.
    public var groupVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// Kind.
    public var kind: String {
        switch self {
        case .nodes: return "Node"
        case .pods: return "Pod"
        case .daemonsets: return "DaemonSet"
        case .deployments: return "Deployment"
        case .poddisruptionbudgets: return "PodDisruptionBudget"
        case .cephclusters: return "CephCluster"
        case .leases: return "Lease"
        }
    }
    /// Singular name.
    public var singular: String { kind.lowercased() }
    /// Has a `status` subresource: writes to the object leave its status alone and writes to `/status` change only
    /// the status (kubernetes/kubernetes pkg/registry/core/node/strategy.go `PrepareForUpdate` of the node and
    /// node-status strategies; Rook's CRDs declare `subresources: status`). Leases have no status.
    public var hasStatus: Bool { self != .leases }
    /// Namespaced or cluster-scoped.
    public var namespaced: Bool { self != .nodes }
    /// kubectl short names.
    public var shortNames: [String] {
        switch self {
        case .nodes: return ["no"]
        case .pods: return ["po"]
        case .daemonsets: return ["ds"]
        case .deployments: return ["deploy"]
        case .poddisruptionbudgets: return ["pdb"]
        case .cephclusters: return ["ceph"]
        case .leases: return []
        }
    }
    /// The `group.resource` form used in messages (`leases.coordination.k8s.io`).
    public var qualified: String { group.isEmpty ? rawValue : "\(rawValue).\(group)" }

    /// Finds a resource by group/version and plural name.
    public static func find(group: String, version: String, plural: String) -> FakeKubeResource? {
        allCases.first { $0.group == group && $0.version == version && $0.rawValue == plural }
    }
}

/// A fault the fake API injects into matching requests (SIMULATION).
public enum FakeKubeFault: Sendable, Hashable {
    /// 500 with an `InternalError` Status.
    case internalError
    /// 503 with a `ServiceUnavailable` Status.
    case serviceUnavailable
    /// 429 with the plain-text body of API priority and fairness (apiserver
    /// pkg/server/filters/priority-and-fairness.go), and `Retry-After`.
    case tooManyRequestsPlainText(retryAfterSeconds: Int)
    /// 429 with a `TooManyRequests` Status body.
    case tooManyRequests
}

/// Counters of what the fake API served (SIMULATION).
public struct FakeKubeStats: Sendable, Hashable {
    /// All requests.
    public var requests = 0
    /// Requests answered with an injected fault.
    public var faultsServed = 0
    /// Successful evictions.
    public var evictions = 0
    /// Evictions refused with a PDB 429.
    public var evictionRefusals = 0
    /// PATCH requests.
    public var patches = 0
    /// Watches opened.
    public var watches = 0
    /// Requests by verb and resource, e.g. "GET nodes/{name}", "GET pods (list, one namespace)", "PUT leases/{name}".
    public var byRoute: [String: Int] = [:]
}
