import Foundation

/// The API server's answer to a dry-run eviction (`POST …/pods/{name}/eviction?dryRun=All`) of one pod: what a
/// real eviction of it would meet right now. The API server runs the same admission and PodDisruptionBudget check
/// as for a real eviction (kubernetes/kubernetes pkg/registry/core/pod/storage/eviction.go: `checkAndDecrement`
/// stops before writing the budget when the request is a dry run) and persists nothing
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run,
/// https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/).
public enum EvictionDryRun: Sendable, Hashable {
    /// 2xx: the eviction would go through now.
    case allowed
    /// 404: the pod is gone already (a drain counts that as evicted).
    case gone
    /// 403 with cause `NamespaceTerminating`: a drain retries it (kubectl `evictPods`), so it says nothing about
    /// whether the drain can finish.
    case namespaceTerminating
    /// 429 "The disruption budget NAME is still being processed by the server" (the budget changed and its
    /// controller has not observed it yet, eviction.go `createTooManyRequestsError`): passes within seconds.
    case budgetNotObservedYet
    /// 429 "Cannot evict pod as it would violate the pod's disruption budget.": the budget allows no disruption
    /// now. `budget` is the name in the API's cause, `detail` the cause's message ("The disruption budget web needs
    /// 2 healthy pods and has 2 currently").
    case refusedByBudget(budget: String?, detail: String)
    /// Any other refusal a drain stops at: 403 (RBAC, an admission webhook, a budget with negative
    /// disruptionsAllowed) or the 500 of a pod under several budgets.
    case refused(httpStatus: Int, message: String)
}

extension KubeAPI {
    /// Asks the API server whether it would evict `namespace/name` now, evicting nothing. Answers that say nothing
    /// about the pod (API priority-and-fairness 429s, other 5xx, transport errors) are thrown.
    public func dryRunEviction(namespace: String, name: String) async throws -> EvictionDryRun {
        do {
            try await evictPod(namespace: namespace, name: name, gracePeriodSeconds: nil, dryRun: true)
            return .allowed
        } catch let e as KubeError {
            return try EvictionDryRun.classify(e)
        }
    }
}

extension EvictionDryRun {
    /// The verdict an eviction's error answer carries, or the error itself when it carries none.
    public static func classify(_ e: KubeError) throws -> EvictionDryRun {
        switch e.code {
        case .notFound:
            return .gone
        case .forbidden where e.hasCause("NamespaceTerminating"):
            return .namespaceTerminating
        case .forbidden:
            return .refused(httpStatus: 403, message: e.status?.message ?? e.message)
        case .tooManyRequests:
            // A budget's 429 names it in a DisruptionBudget cause; one without is API priority and fairness.
            guard let cause = e.status?.details?.causes?.first(where: { $0.reason == "DisruptionBudget" }) else { throw e }
            let detail = cause.message ?? ""
            if detail.hasSuffix("is still being processed by the server.") { return .budgetNotObservedYet }
            return .refusedByBudget(budget: DrainPlanner.budgetName(in: e), detail: detail)
        default:
            if e.httpStatus == 500, let message = e.status?.message, message.contains("more than one PodDisruptionBudget") {
                return .refused(httpStatus: 500, message: message)
            }
            throw e
        }
    }
}
