import Foundation
import NIOCore
import NK3Kube
import Synchronization

/// The state of the fake Kubernetes API server — a SIMULATION. Objects are kept as the JSON the API
/// returns (apiVersion, kind, metadata{name, namespace, uid, resourceVersion, …}, spec, status), so
/// clients see real shapes; this type is also the in-process API tests and the simulator use to set node
/// readiness, add pods, set DaemonSet/Deployment status, set Ceph health and inject faults.
///
/// Thread-safe: one `Mutex` guards everything; watchers are fed under the lock (yielding never blocks, but it can
/// take the consuming task's status lock: nothing that may hold such a lock — a termination or cancellation handler —
/// may wait for this one; see the watch's `onTermination` in FakeKubeRouter).
public final class FakeKubeState: Sendable {
    struct Watcher {
        var resource: FakeKubeResource
        var namespace: String?
        var fieldSelector: [(path: [String], value: String)]
        var continuation: AsyncStream<ByteBuffer>.Continuation
    }
    struct HistoryEvent {
        var resourceVersion: Int
        var resource: FakeKubeResource
        var type: String
        var object: JSONValue
    }
    struct Fault {
        var fault: FakeKubeFault
        var remaining: Int
        var pathPrefix: String?
    }
    struct Store {
        var resourceVersion = 1000
        var objects: [FakeKubeResource: [String: JSONValue]] = [:]
        var watchers: [UUID: Watcher] = [:]
        /// The latest changes (oldest first), so a watch from a list's resourceVersion gets what happened between
        /// the list and the watch, as the API server's watch cache gives it (docs/UPSTREAM.md#watch). Bounded like
        /// the real history; a watch from before `historyStart` gets 410 Expired.
        var history: [FakeKubeState.HistoryEvent] = []
        /// The resourceVersion before the oldest retained event (a watch from it or later can be served).
        var historyStart = 1000
        static let historyLimit = 4096
        var faults: [Fault] = []
        var stats = FakeKubeStats()
        var podTerminationDelay: Duration = .zero
        var evictionHook: (@Sendable (Pod) -> Void)? = nil
        var tokens: Set<String> = []
        /// Whether `pods/exec` is refused as RBAC would (403), `setExecForbidden`.
        var execForbidden = false
        /// Namespaces being deleted (evictions in them are refused with 403 NamespaceTerminating).
        var terminatingNamespaces: Set<String> = []
        /// The simulated cluster's clock minus the local one (`setClockSkew`).
        var clockSkew: TimeInterval = 0
        /// Typed views of stored objects, per resource, key and Swift type; dropped when the object changes.
        /// (Decoding the same unchanged objects on every simulated controller pass was most of the
        /// simulation's CPU in `nk3 bench --scenario rollout`.)
        var typed: [FakeKubeResource: [String: [ObjectIdentifier: any Sendable]]] = [:]
    }

    let store = Mutex(Store())
    /// The Rook operator model (FakeKubeControllers.swift).
    let rook = Mutex(FakeRookOperator())

    /// An empty cluster.
    public init() {}

    // MARK: - generic objects

    /// Stores (creates or replaces) an object given as any Encodable API object; assigns uid,
    /// resourceVersion and creationTimestamp as the API server would. Returns the stored JSON.
    @discardableResult
    public func put<T: Encodable>(_ resource: FakeKubeResource, _ object: T) -> JSONValue {
        let value = (try? JSONValue.from(object)) ?? .null
        return store.withLock { $0.store(resource, value) }
    }

    /// The object's JSON, as GET returns it (PDB status derived), or nil.
    public func object(_ resource: FakeKubeResource, namespace: String? = nil, name: String) -> JSONValue? {
        store.withLock { $0.read(resource, key: Store.key(resource, namespace, name)) }
    }

    /// Decodes an object as a typed value.
    public func get<T: Decodable & Sendable>(
        _ resource: FakeKubeResource, namespace: String? = nil, name: String, as type: T.Type = T.self
    ) -> T? {
        store.withLock { $0.decoded(resource, key: Store.key(resource, namespace, name), as: T.self) }
    }

    /// Every object of a resource (optionally in one namespace), decoded.
    public func list<T: Decodable & Sendable>(_ resource: FakeKubeResource, namespace: String? = nil, as type: T.Type = T.self) -> [T] {
        store.withLock { s in s.keys(resource, namespace: namespace).compactMap { s.decoded(resource, key: $0, as: T.self) } }
    }

    /// Reads, changes and stores a typed object (no-op if it does not exist).
    public func update<T: Codable & Sendable>(
        _ resource: FakeKubeResource, namespace: String? = nil, name: String, as type: T.Type = T.self,
        _ body: (inout T) -> Void
    ) {
        store.withLock { s in
            let key = Store.key(resource, namespace, name)
            guard let v = s.objects[resource]?[key], var typed = s.decoded(resource, key: key, as: T.self) else { return }
            body(&typed)
            guard let changed = try? JSONValue.from(typed) else { return }
            // Keep fields the typed model does not know: merge the typed view over the stored JSON.
            _ = s.store(resource, v.merging(patch: changed))
        }
    }

    /// Deletes an object (watchers see DELETED).
    public func delete(_ resource: FakeKubeResource, namespace: String? = nil, name: String) {
        store.withLock { _ = $0.remove(resource, key: Store.key(resource, namespace, name)) }
    }

    // MARK: - nodes

    /// Adds a Ready node shaped like a k3s node (docs/UPSTREAM.md#nodes).
    public func addNode(
        _ name: String, ready: Bool = true, controlPlane: Bool = false, kernelVersion: String = "6.6.30",
        bootID: String = UUID().uuidString.lowercased(), osImage: String = "NixOS 25.05 (Warbler)",
        labels: [String: String] = [:]
    ) {
        var l = ["kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "k3s"]
        if controlPlane {
            l["node-role.kubernetes.io/control-plane"] = "true"
            l["node-role.kubernetes.io/master"] = "true"
            l["node-role.kubernetes.io/etcd"] = "true"
        }
        l.merge(labels) { _, new in new }
        let node = Node(
            metadata: ObjectMeta(
                name: name, labels: l,
                annotations: ["k3s.io/node-args": controlPlane ? "[\"server\"]" : "[\"agent\"]"]),
            spec: NodeSpec(),
            status: NodeStatus(
                conditions: Self.nodeConditions(ready: ready),
                nodeInfo: NodeSystemInfo(
                    bootID: bootID, kernelVersion: kernelVersion, osImage: osImage, kubeletVersion: "v1.30.4+k3s1",
                    containerRuntimeVersion: "containerd://1.7.17-k3s1")))
        put(.nodes, node)
    }

    /// Sets the kubelet's Ready condition: True/`KubeletReady` or False/`KubeletNotReady`
    /// (docs/UPSTREAM.md#nodes).
    public func setNodeReady(_ name: String, _ ready: Bool) {
        update(.nodes, name: name, as: Node.self) { node in
            var conditions = node.status?.conditions ?? []
            conditions.removeAll { $0.type == "Ready" }
            conditions += Self.nodeConditions(ready: ready).filter { $0.type == "Ready" }
            if node.status == nil { node.status = NodeStatus() }
            node.status?.conditions = conditions
        }
    }

    /// Sets Ready to Unknown/`NodeStatusUnknown`, as the node controller does when heartbeats stop.
    public func setNodeUnknown(_ name: String) {
        update(.nodes, name: name, as: Node.self) { node in
            var conditions = node.status?.conditions ?? []
            conditions.removeAll { $0.type == "Ready" }
            conditions.append(
                KubeCondition(
                    type: "Ready", status: "Unknown", reason: "NodeStatusUnknown",
                    message: "Kubelet stopped posting node status.", lastHeartbeatTime: KubeTime.format(Date()),
                    lastTransitionTime: KubeTime.format(Date())))
            node.status?.conditions = conditions
        }
    }

    /// A node as GET returns it.
    public func node(_ name: String) -> Node? { get(.nodes, name: name) }

    /// All nodes.
    public func nodes() -> [Node] { list(.nodes) }

    static func nodeConditions(ready: Bool) -> [KubeCondition] {
        let now = KubeTime.format(Date())
        let ok: [(String, String, String)] = [
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ]
        var out = ok.map {
            KubeCondition(type: $0.0, status: "False", reason: $0.1, message: $0.2, lastHeartbeatTime: now, lastTransitionTime: now)
        }
        out.append(
            ready
                ? KubeCondition(
                    type: "Ready", status: "True", reason: "KubeletReady", message: "kubelet is posting ready status",
                    lastHeartbeatTime: now, lastTransitionTime: now)
                : KubeCondition(
                    type: "Ready", status: "False", reason: "KubeletNotReady",
                    message: "container runtime network not ready: NetworkReady=false", lastHeartbeatTime: now,
                    lastTransitionTime: now))
        return out
    }

    // MARK: - pods

    /// Adds a pod bound to `node`. `owner` is the controller (`("ReplicaSet", "web-5d9")`,
    /// `("DaemonSet", "svclb")`); nil makes an unreplicated pod. `mirror` adds the mirror annotation.
    @discardableResult
    public func addPod(
        namespace: String = "default", name: String, node: String, labels: [String: String] = [:],
        owner: (kind: String, name: String)? = ("ReplicaSet", "rs"), ready: Bool = true, phase: String = "Running",
        emptyDir: Bool = false, mirror: Bool = false
    ) -> Pod {
        let ownerRef = owner.map {
            OwnerReference(
                apiVersion: $0.kind == "Node" ? "v1" : "apps/v1", kind: $0.kind, name: $0.name,
                uid: UUID().uuidString.lowercased())
        }
        let pod = Pod(
            metadata: ObjectMeta(
                name: name, namespace: namespace, labels: labels,
                annotations: mirror ? [Pod.mirrorAnnotation: UUID().uuidString.lowercased()] : [:],
                ownerReferences: ownerRef.map { [$0] }),
            spec: PodSpec(
                nodeName: node, volumes: emptyDir ? [Volume(name: "scratch", emptyDir: .object([:]))] : nil,
                containers: [.object(["name": .string("main"), "image": .string("registry.local/\(name):1")])]),
            status: PodStatus(
                phase: phase,
                conditions: [KubeCondition(type: "Ready", status: ready ? "True" : "False")]))
        return (try? put(.pods, pod).decode(as: Pod.self)) ?? pod
    }

    /// Sets a pod's Ready condition.
    public func setPodReady(namespace: String = "default", name: String, _ ready: Bool) {
        update(.pods, namespace: namespace, name: name, as: Pod.self) { pod in
            pod.status?.conditions = [KubeCondition(type: "Ready", status: ready ? "True" : "False")]
        }
    }

    /// A pod, or nil.
    public func pod(namespace: String = "default", name: String) -> Pod? {
        get(.pods, namespace: namespace, name: name)
    }

    /// Pods bound to `node`.
    public func pods(onNode node: String) -> [Pod] {
        (list(.pods) as [Pod]).filter { $0.spec?.nodeName == node }
    }

    /// How long an evicted pod stays (with a deletionTimestamp) before it is gone; zero (the default)
    /// removes it at once.
    public func setPodTerminationDelay(_ delay: Duration) {
        store.withLock { $0.podTerminationDelay = delay }
    }

    /// Called (outside the lock) after each successful eviction, e.g. for the simulator to recreate the
    /// pod on another node as a ReplicaSet would.
    public func onEviction(_ hook: @escaping @Sendable (Pod) -> Void) {
        store.withLock { $0.evictionHook = hook }
    }

    // MARK: - apps

    /// Creates or replaces a DaemonSet with the given counters (docs/UPSTREAM.md#rollout-status); `observedGeneration`
    /// below `generation` means the controller has not seen the spec yet.
    public func setDaemonSet(
        namespace: String, name: String, desired: Int, available: Int, updated: Int? = nil, ready: Int? = nil,
        generation: Int = 1, observedGeneration: Int? = nil
    ) {
        let ds = DaemonSet(
            metadata: ObjectMeta(name: name, namespace: namespace, generation: generation, labels: ["app": name]),
            spec: .object([
                "selector": .object(["matchLabels": .object(["app": .string(name)])]),
                "updateStrategy": .object(["type": .string("RollingUpdate")]),
            ]),
            status: DaemonSetStatus(
                currentNumberScheduled: desired, numberMisscheduled: 0, desiredNumberScheduled: desired,
                numberReady: ready ?? available, observedGeneration: observedGeneration ?? generation,
                updatedNumberScheduled: updated ?? desired, numberAvailable: available,
                numberUnavailable: max(0, desired - available)))
        put(.daemonsets, ds)
    }

    /// Creates or replaces a Deployment: `available` replicas of `replicas`; the `Available` condition
    /// is True/`MinimumReplicasAvailable` when `available >= minAvailable` (default: replicas), else
    /// False/`MinimumReplicasUnavailable` (docs/UPSTREAM.md#rollout-status).
    public func setDeployment(
        namespace: String, name: String, replicas: Int, available: Int, minAvailable: Int? = nil, generation: Int = 1
    ) {
        let now = KubeTime.format(Date())
        let ok = available >= (minAvailable ?? replicas)
        let dep = Deployment(
            metadata: ObjectMeta(name: name, namespace: namespace, generation: generation, labels: ["app": name]),
            spec: DeploymentSpec(replicas: replicas, selector: LabelSelector(matchLabels: ["app": name])),
            status: DeploymentStatus(
                observedGeneration: generation, replicas: replicas, updatedReplicas: replicas,
                readyReplicas: available == 0 ? nil : available, availableReplicas: available == 0 ? nil : available,
                unavailableReplicas: replicas - available == 0 ? nil : replicas - available,
                conditions: [
                    KubeCondition(
                        type: "Available", status: ok ? "True" : "False",
                        reason: ok ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                        message: ok ? "Deployment has minimum availability." : "Deployment does not have minimum availability.",
                        lastTransitionTime: now, lastUpdateTime: now),
                    KubeCondition(
                        type: "Progressing", status: "True", reason: "NewReplicaSetAvailable",
                        message: "ReplicaSet \"\(name)-5d9\" has successfully progressed.", lastTransitionTime: now,
                        lastUpdateTime: now),
                ]))
        put(.deployments, dep)
    }

    /// Adds a PodDisruptionBudget; its status is derived from the pods on every read and eviction
    /// (docs/UPSTREAM.md#poddisruptionbudget).
    public func addPodDisruptionBudget(
        namespace: String = "default", name: String, matchLabels: [String: String], minAvailable: IntOrString? = nil,
        maxUnavailable: IntOrString? = nil
    ) {
        put(
            .poddisruptionbudgets,
            PodDisruptionBudget(
                metadata: ObjectMeta(name: name, namespace: namespace, generation: 1),
                spec: PodDisruptionBudgetSpec(
                    minAvailable: minAvailable, maxUnavailable: maxUnavailable,
                    selector: LabelSelector(matchLabels: matchLabels))))
    }

    /// A PDB with its derived status.
    public func podDisruptionBudget(namespace: String = "default", name: String) -> PodDisruptionBudget? {
        get(.poddisruptionbudgets, namespace: namespace, name: name)
    }

    // MARK: - ceph

    /// Sets a Rook CephCluster's `status.ceph` as the operator writes it (docs/UPSTREAM.md#rook-cephcluster):
    /// `lastChecked` in whole seconds; `previousHealth`/`lastChanged` move only when health changes.
    public func setCephHealth(
        namespace: String = "rook-ceph", name: String = "rook-ceph", health: String,
        details: [String: CephHealthMessage] = [:], lastChecked: Date = Date()
    ) {
        let checked = KubeTime.format(lastChecked)
        store.withLock { s in
            let key = Store.key(.cephclusters, namespace, name)
            var cluster =
                (try? s.objects[.cephclusters]?[key]?.decode(as: CephCluster.self))
                ?? CephCluster(
                    metadata: ObjectMeta(name: name, namespace: namespace, generation: 1),
                    spec: .object(["dataDirHostPath": .string("/var/lib/rook")]))
            var ceph = cluster.status?.ceph ?? CephStatus(fsid: UUID().uuidString.lowercased())
            if ceph.health != health {
                ceph.previousHealth = ceph.health
                ceph.lastChanged = checked
            }
            ceph.health = health
            ceph.lastChecked = checked
            ceph.details = details
            cluster.status = CephClusterStatus(phase: "Ready", state: "Created", message: "Cluster created successfully", ceph: ceph)
            if let v = try? JSONValue.from(cluster) {
                // details are replaced, not merged: write the whole object.
                _ = s.store(.cephclusters, v)
            }
        }
    }

    // MARK: - faults, auth, stats

    /// Sets the cluster's clock (the API server's `Date` header) `seconds` ahead of this machine's (negative: behind),
    /// as a workstation whose clock is off sees a real cluster.
    public func setClockSkew(_ seconds: TimeInterval) { store.withLock { $0.clockSkew = seconds } }

    /// The simulated cluster's time now.
    public func clusterNow() -> Date { Date().addingTimeInterval(store.withLock { $0.clockSkew }) }

    /// The next `count` requests whose path starts with `pathPrefix` (all, if nil) get `fault`.
    public func injectFaults(_ fault: FakeKubeFault, count: Int, pathPrefix: String? = nil) {
        store.withLock { $0.faults.append(Fault(fault: fault, remaining: count, pathPrefix: pathPrefix)) }
    }

    /// Bearer tokens the server accepts (besides client certificates signed by the cluster CA).
    public func addToken(_ token: String) {
        store.withLock { _ = $0.tokens.insert(token) }
    }

    /// Counters so far.
    public var stats: FakeKubeStats { store.withLock { $0.stats } }

    /// The number of watchers open now.
    public var openWatches: Int { store.withLock { $0.watchers.count } }

    /// Ends every open watch stream, as the API server does at a watch's timeoutSeconds.
    public func endWatches() {
        let open = store.withLock { s -> [Watcher] in
            defer { s.watchers.removeAll() }
            return Array(s.watchers.values)
        }
        for w in open { w.continuation.finish() }
    }
}
