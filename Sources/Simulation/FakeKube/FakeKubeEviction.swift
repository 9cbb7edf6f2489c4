import Foundation
import NIOCore
import NK3Common
import NK3Kube

/// The fake API's `pods/{name}/eviction` subresource — a SIMULATION of kubernetes/kubernetes
/// pkg/registry/core/pod/storage/eviction.go (docs/UPSTREAM.md#eviction): PodDisruptionBudget accounting, 429 when a budget
/// allows no disruption, 500 for a pod under several budgets, 404 for a missing pod, 403 NamespaceTerminating in a
/// terminating namespace, and dry runs (nothing deleted, no budget written) asked for by `?dryRun=All` or by the
/// Eviction's `deleteOptions.dryRun`, answered with the same status and Status as the real eviction would get
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run).
extension FakeKubeRouter {
    func evict(_ route: Route, _ name: String, _ request: HTTPServerRequest) -> HTTPServerResponse {
        let ns = route.namespace ?? "default"
        let queryDry: Bool
        switch FakeKubeStrict.dryRun(request, options: "CreateOptions") {
        case .success(let d): queryDry = d
        case .failure(let refusal): return refusal.response
        }
        guard let eviction = try? JSONDecoder().decode(Eviction.self, from: Data(request.body.readableBytesView)) else {
            return Self.status(400, reason: "BadRequest", message: "the body of the request is not a policy/v1 Eviction")
        }
        if let bodyName = eviction.metadata.name, bodyName != name {
            return Self.status(400, reason: "BadRequest", message: "name in URL does not match name in Eviction object")
        }
        // eviction.go `propagateDryRun`: the query's dryRun fills in the body's; both given and different is an error
        // (a plain Go error, which the handler answers as a 500 Status with no reason); the delete then runs as a dry
        // run when the body's list is non-empty (apiserver pkg/util/dryrun `IsDryRun`: any value).
        let bodyDry = eviction.deleteOptions?.dryRun ?? []
        if queryDry && !bodyDry.isEmpty && bodyDry != ["All"] {
            let shown = "[" + bodyDry.joined(separator: " ") + "]"
            return Self.json(
                500, KubeStatus(message: "Non-matching dry-run options in request and content: [All] and \(shown)", code: 500))
        }
        let dry = queryDry || !bodyDry.isEmpty
        enum Outcome {
            case evicted(Pod, Duration, (@Sendable (Pod) -> Void)?), notFound, refused(KubeStatus), tooMany(KubeStatus)
            case namespaceTerminating
        }
        let outcome: Outcome = state.store.withLock { s in s.write(dryRun: dry) { (s: inout FakeKubeState.Store) -> Outcome in
            // The namespace lifecycle admission plugin refuses new content, an eviction included, in a terminating
            // namespace (kubernetes/kubernetes plugin/pkg/admission/namespace/lifecycle/admission.go).
            if s.terminatingNamespaces.contains(ns) { return .namespaceTerminating }
            let key = FakeKubeState.Store.key(.pods, ns, name)
            guard let v = s.objects[.pods]?[key], let pod = try? v.decode(as: Pod.self) else { return .notFound }
            func remove() -> Outcome {
                s.stats.evictions += 1
                if s.podTerminationDelay > .zero {
                    guard case .object(var o) = v, case .object(var m)? = o["metadata"] else { return .notFound }
                    m["deletionTimestamp"] = .string(KubeTime.format(Date()))
                    o["metadata"] = .object(m)
                    _ = s.store(.pods, .object(o))
                } else {
                    _ = s.remove(.pods, key: key)
                }
                return .evicted(pod, s.podTerminationDelay, s.evictionHook)
            }
            let phase = pod.status?.phase ?? "Pending"
            if phase == "Succeeded" || phase == "Failed" || phase == "Pending" || pod.metadata.deletionTimestamp != nil {
                return remove()
            }
            let pdbs = s.list(.poddisruptionbudgets, namespace: ns).compactMap { try? $0.decode(as: PodDisruptionBudget.self) }
                .filter { FakeKubeState.Store.selects($0, pod) }
            if pdbs.isEmpty { return remove() }
            if pdbs.count > 1 {
                return .tooMany(
                    KubeStatus(message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.", code: 500))
            }
            let pdb = pdbs[0]
            let st = s.derivedStatus(pdb)
            if !pod.isReady {
                if pdb.spec?.unhealthyPodEvictionPolicy == "AlwaysAllow" || (st.currentHealthy >= st.desiredHealthy && st.desiredHealthy > 0) {
                    return remove()
                }
            }
            if st.disruptionsAllowed <= 0 {
                s.stats.evictionRefusals += 1
                return .refused(
                    KubeStatus(
                        message: "Cannot evict pod as it would violate the pod's disruption budget.", reason: "TooManyRequests",
                        details: KubeStatusDetails(causes: [
                            KubeStatusCause(
                                reason: "DisruptionBudget",
                                message: "The disruption budget \(pdb.name) needs \(st.desiredHealthy) healthy pods and has \(st.currentHealthy) currently")
                        ]), code: 429))
            }
            return remove()
        } }
        switch outcome {
        case .namespaceTerminating:
            let message = "unable to create new content in namespace \(ns) because it is being terminated"
            return Self.status(
                403, reason: "Forbidden", message: "pods \"\(name)\" is forbidden: \(message)",
                details: KubeStatusDetails(
                    name: name, kind: "pods",
                    causes: [KubeStatusCause(reason: "NamespaceTerminating", message: message, field: "metadata.namespace")]))
        case .notFound:
            return Self.status(404, reason: "NotFound", message: "pods \"\(name)\" not found", details: KubeStatusDetails(name: name, kind: "pods"))
        case .refused(let st): return Self.json(429, st)
        case .tooMany(let st): return Self.json(500, st)
        case .evicted(let pod, let delay, let hook):
            if dry { return Self.json(201, KubeStatus(status: "Success", code: 201)) }
            if delay > .zero {
                let state = self.state
                Task {
                    try? await Task.sleep(for: delay)
                    state.delete(.pods, namespace: pod.namespace, name: pod.name)
                }
            }
            hook?(pod)
            return Self.json(201, KubeStatus(status: "Success", code: 201))
        }
    }
}
