import Foundation

/// The Kubernetes operations nk3 uses. `KubeClient` implements it over HTTPS; the rollout engine and the
/// gates take `any KubeAPI`, so they can be tested against any implementation.
///
/// Every method throws `KubeError` (404 → `.notFound`, 409 → `.conflict`, 429 → `.tooManyRequests`, …).
/// Higher-level rules (cordon with a record, uncordon only our own, drain) are extensions built on these.
public protocol KubeAPI: Sendable {
    /// `GET /api/v1/nodes/{name}`.
    func getNode(_ name: String) async throws -> Node
    /// `GET /api/v1/nodes`.
    func listNodes() async throws -> [Node]
    /// `PATCH /api/v1/nodes/{name}` with a strategic merge patch (for the fields nk3 touches it equals a
    /// JSON merge patch, docs/UPSTREAM.md#nodes). A `metadata.resourceVersion` in the patch makes a stale
    /// write fail with `.conflict`.
    func patchNode(_ name: String, patch: JSONValue) async throws -> Node
    /// Pods bound to `node` (`fieldSelector=spec.nodeName=…`, all namespaces, docs/UPSTREAM.md#drain).
    func listPods(onNode node: String) async throws -> [Pod]
    /// `GET /api/v1/pods`: every pod in every namespace (in pages), one list where a look at many nodes would
    /// otherwise take a list per node.
    func listAllPods() async throws -> [Pod]
    /// `GET /api/v1/namespaces/{ns}/pods?labelSelector=…`: the pods in `namespace` matching `labelSelector`.
    func listPods(namespace: String, labelSelector: String) async throws -> [Pod]
    /// `GET /api/v1/namespaces/{ns}/pods/{name}/exec?command=…` upgraded to a WebSocket (`v5.channel.k8s.io`,
    /// `KubeExecProtocol`): runs a read-only `command` in `container` (nil: the pod's only one) and returns its
    /// output and exit code, within `timeout` and `maxOutputBytes`. A refused upgrade throws the API's error (403:
    /// no `create` on `pods/exec`; 404: no such pod); a command that could not be started throws `.server`.
    func exec(
        namespace: String, pod: String, container: String?, command: [String], timeout: Duration, maxOutputBytes: Int
    ) async throws -> KubeExecResult
    /// `GET /api/v1/namespaces/{ns}/pods/{name}`.
    func getPod(namespace: String, name: String) async throws -> Pod
    /// `POST …/pods/{name}/eviction` with a `policy/v1` Eviction (docs/UPSTREAM.md#eviction). A PDB refusal throws
    /// `.tooManyRequests` with the API's Status (its cause names the budget). With `dryRun` the request carries
    /// `?dryRun=All`: the API server runs admission and the PodDisruptionBudget check and answers as it would, but
    /// evicts nothing (https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run).
    func evictPod(namespace: String, name: String, gracePeriodSeconds: Int?, dryRun: Bool) async throws
    /// `GET /api/v1/namespaces/{ns}/pods?watch=true&fieldSelector=metadata.name=…&resourceVersion=…`: one pod's
    /// changes after `resourceVersion` (docs/UPSTREAM.md#watch), until the server ends the stream or the caller cancels.
    func watchPod(namespace: String, name: String, from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<Pod>, any Error>
    /// `GET /apis/apps/v1/namespaces/{ns}/daemonsets/{name}`.
    func getDaemonSet(namespace: String, name: String) async throws -> DaemonSet
    /// `GET /apis/apps/v1/namespaces/{ns}/daemonsets`.
    func listDaemonSets(namespace: String) async throws -> [DaemonSet]
    /// `GET /apis/apps/v1/namespaces/{ns}/deployments`.
    func listDeployments(namespace: String) async throws -> [Deployment]
    /// `GET /apis/apps/v1/namespaces/{ns}/daemonsets` with the list's `metadata.resourceVersion`, to start a watch from
    /// (docs/UPSTREAM.md#watch); nil when the answer carries none.
    func listDaemonSetsForWatch(namespace: String) async throws -> (daemonSets: [DaemonSet], resourceVersion: String?)
    /// `GET /apis/apps/v1/namespaces/{ns}/daemonsets?watch=true&resourceVersion=…`: the changes after
    /// `resourceVersion` (needs only namespaced `watch` on daemonsets), until the server ends the stream or the caller cancels.
    func watchDaemonSets(namespace: String, from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<DaemonSet>, any Error>
    /// `GET /apis/apps/v1/namespaces/{ns}/deployments` with the list's `metadata.resourceVersion` (as
    /// `listDaemonSetsForWatch`).
    func listDeploymentsForWatch(namespace: String) async throws -> (deployments: [Deployment], resourceVersion: String?)
    /// `GET /apis/apps/v1/namespaces/{ns}/deployments?watch=true&resourceVersion=…` (as `watchDaemonSets`).
    func watchDeployments(namespace: String, from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<Deployment>, any Error>
    /// `GET /apis/policy/v1/namespaces/{ns}/poddisruptionbudgets`.
    func listPodDisruptionBudgets(namespace: String) async throws -> [PodDisruptionBudget]
    /// `GET /apis/ceph.rook.io/v1/namespaces/{ns}/cephclusters/{name}`.
    func getCephCluster(namespace: String, name: String) async throws -> CephCluster
    /// `GET /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`.
    func getLease(namespace: String, name: String) async throws -> Lease
    /// `POST` a new Lease; an existing one throws `.conflict` (AlreadyExists).
    func createLease(_ lease: Lease) async throws -> Lease
    /// `PUT` a Lease carrying the resourceVersion it was read at; a stale one throws `.conflict`
    /// (docs/UPSTREAM.md#lease).
    func updateLease(_ lease: Lease) async throws -> Lease
    /// `GET /api/v1/nodes` with the list's `metadata.resourceVersion`, to start a watch from (docs/UPSTREAM.md#watch);
    /// nil when the answer carries none (then callers list again instead of watching).
    func listNodesForWatch() async throws -> (nodes: [Node], resourceVersion: String?)
    /// `GET /api/v1/nodes?watch=true&resourceVersion=…`: the changes after `resourceVersion`, until the server ends
    /// the stream or the caller cancels (docs/UPSTREAM.md#watch).
    func watchNodes(from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<Node>, any Error>
    /// Moves requests off the API server at `address` (a host, `host:port` or URL: a k3s server about to reboot,
    /// whose API goes down with it) to another server that answers, and uses that one only when no other answers.
    /// Returns the server moved to; nil when nothing moved (it was not in use, no other server answered, or this
    /// client has only one).
    func moveOff(apiServer address: String) async -> URL?
    /// The API server's clock at the local instant `local`, from the `Date` header of its latest answer
    /// (`HTTPDate`): times the cluster stamps (e.g. Rook's `status.ceph.lastChecked`) are compared on the cluster's
    /// clock, not the workstation's.
    func clusterTime(at local: Date) -> Date
}

extension KubeAPI {
    /// One API server only: nowhere to move.
    public func moveOff(apiServer address: String) async -> URL? { nil }

    /// Without a server's `Date` to go by: the local clock.
    public func clusterTime(at local: Date) -> Date { local }

    /// A real eviction (not a dry run).
    public func evictPod(namespace: String, name: String, gracePeriodSeconds: Int?) async throws {
        try await evictPod(namespace: namespace, name: name, gracePeriodSeconds: gracePeriodSeconds, dryRun: false)
    }
}

/// The annotations nk3 writes on the nodes it cordons, so it only ever undoes its own cordons
/// (Rancher's upgrade controller uncordoned nodes it had not cordoned: rancher/system-upgrade-controller#341).
public enum NK3Annotations {
    /// Who cordoned the node (e.g. `nk3/alice@laptop`).
    public static let cordonedBy = "nk3.io/cordoned-by"
    /// Why (e.g. `rollout 2024-05-01T12:00:00Z: reboot for kernel 6.6.30`).
    public static let cordonReason = "nk3.io/cordon-reason"
}

/// What `cordon(node:by:reason:)` did.
public enum CordonOutcome: Sendable, Hashable {
    /// The node was schedulable; nk3 cordoned it and recorded why.
    case cordoned
    /// nk3 had already cordoned it (a resumed rollout).
    case alreadyCordonedByNK3(by: String)
    /// Someone else cordoned it; nk3 left it alone and will not uncordon it.
    case alreadyCordonedByOther
}

/// What `uncordonIfCordonedByNK3(node:)` did.
public enum UncordonOutcome: Sendable, Hashable {
    /// nk3's cordon was undone (and its annotations removed).
    case uncordoned
    /// The node was not cordoned (stale nk3 annotations, if any, were removed).
    case notCordoned
}

extension KubeAPI {
    /// The raw operation: sets `spec.unschedulable` (false is sent as `null`, the field is `omitempty`) and
    /// sets (`String`) or removes (`nil`) annotations, in one patch, guarded by `resourceVersion` if given.
    @discardableResult
    public func setUnschedulable(
        _ node: String, _ unschedulable: Bool, annotations: [String: String?] = [:], resourceVersion: String? = nil
    ) async throws -> Node {
        var metadata: [String: JSONValue] = [:]
        if !annotations.isEmpty {
            metadata["annotations"] = .object(annotations.mapValues { $0.map(JSONValue.string) ?? .null })
        }
        if let resourceVersion { metadata["resourceVersion"] = .string(resourceVersion) }
        var patch: [String: JSONValue] = ["spec": .object(["unschedulable": unschedulable ? .bool(true) : .null])]
        if !metadata.isEmpty { patch["metadata"] = .object(metadata) }
        return try await patchNode(node, patch: .object(patch))
    }

    /// Cordons `node` and records who and why in `nk3.io/cordoned-by` / `nk3.io/cordon-reason`. A node
    /// already cordoned by someone else is left untouched (and so will never be uncordoned by nk3).
    /// The patch carries the resourceVersion read, so a concurrent change is retried, not overwritten.
    ///
    /// `known`: a copy of the node the caller already holds (a watch's view), used instead of the first GET only when
    /// it leads to the cordon patch: that patch carries the copy's resourceVersion, so a stale copy is refused with 409
    /// (docs/UPSTREAM.md#nodes; https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions) and the
    /// node is read again. kubectl cordon reads the node and then patches it (kubectl pkg/drain/cordon.go); with a
    /// copy that proves current by the precondition the read is already done. A copy that would leave the node
    /// alone (already cordoned) decides nothing: the node is read, as without one.
    public func cordon(node: String, by owner: String, reason: String, known: Node? = nil) async throws -> CordonOutcome {
        let known = known.flatMap { $0.metadata.resourceVersion != nil && !$0.isUnschedulable ? $0 : nil }
        return try await patchNode(node, known: known, toDo: "cordon") { current in
            if current.isUnschedulable {
                if current.isCordonedByNK3 {
                    return .alreadyCordonedByNK3(by: current.annotation(NK3Annotations.cordonedBy) ?? KubeClient.fieldManager)
                }
                return .alreadyCordonedByOther
            }
            try await setUnschedulable(
                node, true, annotations: [NK3Annotations.cordonedBy: owner, NK3Annotations.cordonReason: reason],
                resourceVersion: current.metadata.resourceVersion)
            return .cordoned
        }
    }

    /// Uncordons `node` only if nk3 holds its cordon (`Node.isCordonedByNK3`: managedFields, else nk3's
    /// annotation), removing the annotations. A node cordoned by someone else throws `.refused` and stays cordoned.
    ///
    /// `known`: a copy of the node the caller already holds, used instead of the first GET only when it leads to the
    /// uncordon patch, which carries its resourceVersion (a stale copy: 409, read again), as in `cordon`. A copy
    /// that would refuse or leave the node alone decides nothing: the node is read, as without one.
    public func uncordonIfCordonedByNK3(node: String, known: Node? = nil) async throws -> UncordonOutcome {
        let known = known.flatMap { n -> Node? in
            guard n.metadata.resourceVersion != nil else { return nil }
            let writes = n.isUnschedulable ? n.isCordonedByNK3 : n.annotation(NK3Annotations.cordonedBy) != nil
            return writes ? n : nil
        }
        return try await patchNode(node, known: known, toDo: "uncordon") { current in
            let annotated = current.annotation(NK3Annotations.cordonedBy) != nil
            if current.isUnschedulable && !current.isCordonedByNK3 {
                let why =
                    current.unschedulableManager.map { "spec.unschedulable was set by \($0)" }
                    ?? "no \(NK3Annotations.cordonedBy) annotation"
                throw KubeError(
                    .refused,
                    "node \(node) is cordoned, but held by someone else (\(why)): nk3 leaves it cordoned; run `kubectl uncordon \(node)` if that is intended")
            }
            if !current.isUnschedulable && !annotated { return .notCordoned }
            try await setUnschedulable(
                node, false, annotations: [NK3Annotations.cordonedBy: nil, NK3Annotations.cordonReason: nil],
                resourceVersion: current.metadata.resourceVersion)
            return current.isUnschedulable ? .uncordoned : .notCordoned
        }
    }

    /// The read-then-patch loop of `cordon` and `uncordonIfCordonedByNK3`: up to five rounds of reading the node
    /// (`known`, the caller's copy, in the first round only; else a GET) and running `step` on it, which patches
    /// with the node's resourceVersion. A conflict (409: the node changed since it was read) reads it again; so does
    /// a transient failure of a patch sent from the copy (`KubeError.isTransient`). Anything else is thrown.
    private func patchNode<T>(
        _ node: String, known: Node?, toDo verb: String, _ step: (Node) async throws -> T
    ) async throws -> T {
        var known = known
        for _ in 0..<5 {
            let fromCopy = known != nil
            let current: Node
            if let copy = known {
                current = copy
                known = nil
            } else {
                current = try await getNode(node)
            }
            do {
                return try await step(current)
            } catch let error as KubeError where error.code == .conflict {
                continue
            } catch let error as KubeError where fromCopy && error.isTransient {
                continue  // read the node, as without a copy: see `KubeError.isTransient`
            }
        }
        throw KubeError(.conflict, "node \(node) kept changing while nk3 tried to \(verb) it; retry")
    }
}

extension KubeError {
    /// A failure that may pass by itself: 429, 500, 502, 503, 504, or no answer (what the client retries for a read).
    /// A cordon or uncordon patch sent from a known copy instead of a fresh GET meets these where the GET used to
    /// (an API server restarting; its retries absorbed them), and writes are not retried: such a patch falls back
    /// to reading the node (retried) and patching again. Safe to repeat: the patch carries a resourceVersion, so
    /// one that did reach the server before failing shows in the read (nk3's cordon already on, or already off).
    var isTransient: Bool {
        code == .transport || code == .tooManyRequests || [500, 502, 503, 504].contains(httpStatus ?? 0)
    }
}
