import Foundation
import NK3Kube

/// One pod that would stop a node's drain, and why.
public struct DrainBlocker: Sendable, Hashable {
    /// The node whose drain it stops.
    public var node: String
    /// `namespace/name` of the pod.
    public var pod: String
    /// Why its eviction would be refused.
    public var reason: String

    /// Makes a blocker.
    public init(node: String, pod: String, reason: String) {
        self.node = node
        self.pod = pod
        self.reason = reason
    }
}

/// The drain rules applied to every node's pods before anything is touched, so that a rollout that would
/// stop at a refused drain half-way refuses at the start instead. Pure: pods and PodDisruptionBudgets in, the
/// blockers out. Only what waiting cannot fix counts (a budget that allows no disruption *now* may allow one
/// once a pod elsewhere is healthy again; the drain retries those):
/// - a pod no controller manages (kubectl drain refuses it without `--force`: the pod would be gone for good);
/// - a pod covered by more than one PodDisruptionBudget (the Eviction API answers 500 for it,
///   https://kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-budgets);
/// - a pod whose budget wants every pod it expects healthy (`desiredHealthy >= expectedPods`, e.g.
///   `minAvailable: 1` over one replica): no eviction is ever allowed.
public enum DrainPreflight {
    /// The blockers among `pods` on `node`; `budgets` are every PodDisruptionBudget of the pods' namespaces.
    public static func blockers(node: String, pods: [Pod], budgets: [PodDisruptionBudget]) -> [DrainBlocker] {
        var out: [DrainBlocker] = []
        for pod in pods {
            let name = "\(pod.metadata.namespace ?? "default")/\(pod.metadata.name ?? "?")"
            switch DrainPlanner.decide(pod, force: false) {
            case .skipDaemonSet, .skipMirror, .evictOrphanedDaemonSet:
                continue
            case .refuseOrphanedDaemonSet:
                out.append(
                    DrainBlocker(
                        node: node, pod: name,
                        reason: "its DaemonSet is gone (kubectl drain refuses such a pod without --force)"))
            case .refuseUnreplicated:
                out.append(
                    DrainBlocker(
                        node: node, pod: name,
                        reason: "no controller manages it (a drain would delete it for good; kubectl drain refuses it "
                            + "without --force)"))
            case .evict:
                let covering = budgets.filter { covers($0, pod) }
                if covering.count > 1 {
                    let names = covering.map { "\($0.metadata.namespace ?? "default")/\($0.name)" }.sorted()
                    out.append(
                        DrainBlocker(
                            node: node, pod: name,
                            reason: "more than one PodDisruptionBudget covers it (\(names.joined(separator: ", "))): the "
                                + "Eviction API refuses it"))
                } else if let pdb = covering.first, let s = pdb.status, s.expectedPods > 0,
                    s.desiredHealthy >= s.expectedPods
                {
                    out.append(
                        DrainBlocker(
                            node: node, pod: name,
                            reason: "PodDisruptionBudget \(pdb.metadata.namespace ?? "default")/\(pdb.name) wants all "
                                + "\(s.expectedPods) of its pods healthy, so it never allows this eviction"))
                }
            }
        }
        return out
    }

    /// Whether `pdb` covers `pod`: same namespace and its selector matches the pod's labels. A budget without a
    /// selector covers no pod (policy/v1: a null selector selects nothing; an empty one selects every pod).
    static func covers(_ pdb: PodDisruptionBudget, _ pod: Pod) -> Bool {
        guard (pdb.metadata.namespace ?? "default") == (pod.metadata.namespace ?? "default"),
            let selector = pdb.spec?.selector
        else { return false }
        return selector.matches(pod.metadata.labels ?? [:])
    }
}
