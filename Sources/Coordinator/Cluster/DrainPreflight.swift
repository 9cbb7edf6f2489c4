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
    /// Where the finding comes from.
    public var source: Source

    /// Where a blocker was found.
    public enum Source: String, Sendable, Hashable {
        /// nk3's drain rules over the pods and budgets it read (`DrainPreflight.blockers`): holds until the pod or
        /// the budget changes.
        case rules
        /// The API server's answer to a dry-run eviction (`DrainPreflight.apiBlocker`): holds now, in the cluster's
        /// current state.
        case apiDryRun
    }

    /// Makes a blocker.
    public init(node: String, pod: String, reason: String, source: Source = .rules) {
        self.node = node
        self.pod = pod
        self.reason = reason
        self.source = source
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

    /// The pods on a node worth a dry-run eviction (`?dryRun=All`), because there the API server knows more than
    /// the rules above: a pod the drain would evict, not already a blocker, covered by exactly one budget, and one
    /// the API server checks the budget for (not Pending, finished or being deleted: those it deletes without
    /// looking at budgets, kubernetes/kubernetes pkg/registry/core/pod/storage/eviction.go `canIgnorePDB`). For
    /// those it applies the budget's `disruptionsAllowed` as it stands, the pod's readiness and the budget's
    /// `unhealthyPodEvictionPolicy`, and runs admission (RBAC, webhooks) — what a drain would meet right now.
    /// Pods under no budget are not asked about: the rules cover them, and each question is a request.
    public static func dryRunCandidates(pods: [Pod], budgets: [PodDisruptionBudget], blocked: [DrainBlocker]) -> [Pod] {
        let already = Set(blocked.map(\.pod))
        return pods.filter { pod in
            guard case .evict = DrainPlanner.decide(pod, force: false), !already.contains(pod.qualifiedName),
                pod.status?.phase == "Running", pod.metadata.deletionTimestamp == nil
            else { return false }
            return budgets.filter { covers($0, pod) }.count == 1
        }
    }

    /// The blocker a dry-run eviction's answer makes, if any. A budget that allows no disruption now counts: the
    /// drain of this node, were it drained first, would be refused until that budget's pods are healthy again,
    /// so the rollout would cordon the node and then wait (up to the drain timeout) on a workload that is not
    /// healthy. Answers a drain rides out by itself (a terminating namespace, a budget the controller has not
    /// observed yet) do not.
    public static func apiBlocker(node: String, pod: Pod, answer: EvictionDryRun) -> DrainBlocker? {
        let said: String
        switch answer {
        case .allowed, .gone, .namespaceTerminating, .budgetNotObservedYet:
            return nil
        case .refusedByBudget(let budget, let detail):
            let who = budget.map { "PodDisruptionBudget \(pod.namespace)/\($0)" } ?? "its PodDisruptionBudget"
            said = "\(who) allows no disruption now (HTTP 429: \(detail))"
        case .refused(let code, let message):
            said = "HTTP \(code): \(message)"
        }
        return DrainBlocker(
            node: node, pod: pod.qualifiedName, reason: "the API server refuses its eviction (dry-run eviction): \(said)",
            source: .apiDryRun)
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
