import Foundation
import NK3Kube

/// Which rule decides that a DaemonSet or Deployment is healthy (inventory `health_rule`).
public enum WorkloadHealthRule: String, Sendable, Hashable, CaseIterable {
    /// The seed's rule: a DaemonSet has `numberAvailable == desiredNumberScheduled` (its spec observed), a
    /// Deployment's `Available` condition is True (`MinimumReplicasAvailable`). The default: it is what the
    /// Python tool checked, and it asks only that the workloads serve — a rollout of the workloads themselves
    /// that is still under way (or stuck) elsewhere in the cluster does not hold up a node's reboot.
    case available
    /// `kubectl rollout status`: the controller observed the current spec (`observedGeneration`), every pod
    /// runs it (updated counts), all of them available; a Deployment past its progress deadline
    /// (`ProgressDeadlineExceeded`) fails at once. Stricter: a workload rollout in progress holds up the nodes.
    case rolloutStatus = "rollout-status"
}

extension GateLogic {
    /// `kubectl rollout status daemonset` (kubectl pkg/polymorphichelpers/rollout_status.go,
    /// `DaemonSetStatusViewer`); nil when done, else why not. A DaemonSet with the `OnDelete` strategy has
    /// no rollout to wait for (kubectl refuses it): the seed's rule applies to it.
    public static func daemonSetRolloutProblem(_ ds: DaemonSet) -> String? {
        if case .object(let spec)? = ds.spec, case .object(let strategy)? = spec["updateStrategy"],
            case .string(let type)? = strategy["type"], type != "RollingUpdate"
        {
            return daemonSetProblem(ds)
        }
        let s = ds.status ?? DaemonSetStatus()
        if let gen = ds.metadata.generation, gen > s.observedGeneration {
            return "\(ds.name): waiting for the spec update to be observed (generation \(gen), observed \(s.observedGeneration))"
        }
        if s.updatedNumberScheduled < s.desiredNumberScheduled {
            return "\(ds.name): \(s.updatedNumberScheduled) of \(s.desiredNumberScheduled) updated pods scheduled"
        }
        if s.numberAvailable < s.desiredNumberScheduled {
            return "\(ds.name): \(s.numberAvailable) of \(s.desiredNumberScheduled) updated pods available"
        }
        return nil
    }

    /// `kubectl rollout status deployment` (kubectl pkg/polymorphichelpers/rollout_status.go,
    /// `DeploymentStatusViewer`); nil when done, else why not, and whether waiting cannot help
    /// (`ProgressDeadlineExceeded`).
    public static func deploymentRolloutProblem(_ d: Deployment) -> (why: String, final: Bool)? {
        let s = d.status ?? DeploymentStatus()
        if let gen = d.metadata.generation, gen > (s.observedGeneration ?? 0) {
            return ("\(d.name): waiting for the spec update to be observed", false)
        }
        if let p = s.conditions?.first(where: { $0.type == "Progressing" }), p.reason == "ProgressDeadlineExceeded" {
            return ("\(d.name): exceeded its progress deadline (\(p.message ?? "ProgressDeadlineExceeded"))", true)
        }
        let want = d.spec?.replicas ?? 1
        let updated = s.updatedReplicas ?? 0
        if updated < want { return ("\(d.name): \(updated) of \(want) new replicas updated", false) }
        if let total = s.replicas, total > updated {
            return ("\(d.name): \(total - updated) old replicas pending termination", false)
        }
        let available = s.availableReplicas ?? 0
        if available < updated { return ("\(d.name): \(available) of \(updated) updated replicas available", false) }
        return nil
    }
}
