import Foundation
import Logging
import NK3Agent
import NK3Kube
import Synchronization

/// The Kubernetes side of the simulated cluster — a SIMULATION of what the kubelet, the node controller, the
/// scheduler, the ReplicaSet/DaemonSet controllers and the Rook operator would write into the API, kept in a
/// `FakeKubeState`:
///
/// - node status follows the node lifecycle as a real cluster shows it. A machine that goes down posts
///   nothing (k3s runs without graceful node shutdown), so its Node keeps saying Ready=True with the OLD
///   `nodeInfo.bootID` until the node controller, after `nodeMonitorGracePeriod` without a heartbeat, sets
///   Ready to Unknown (reason `NodeStatusUnknown`) and marks the node's pods not ready; the kubelet of the
///   new boot posts the new `bootID`/`kernelVersion` with Ready=True once it is ready. (Node lifecycle
///   controller: https://kubernetes.io/docs/concepts/architecture/nodes/#node-controller and
///   `--node-monitor-grace-period`, https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/ —
///   40 s by default, 50 s from Kubernetes 1.32.) A reboot shorter than the grace period never shows
///   Unknown at all: right after it, Ready=True is stale;
/// - Deployments' pods (owner: a ReplicaSet) evicted by a drain are recreated on another schedulable Ready
///   node and turn Ready after `timings.podStartup`; DaemonSet pods stay on their node and are down while it is;
/// - DaemonSet and Deployment status are derived from the pods (docs/UPSTREAM.md#rollout-status; a Deployment
///   is Available when at least replicas − 25% (rounded down) are available, the default maxUnavailable);
/// - the Rook CephCluster's health is refreshed every `cephCheckInterval` (docs/UPSTREAM.md#rook-cephcluster:
///   about once a minute, `lastChecked` advancing each time; at `.instant` once a real second plus right after a
///   node goes down or returns): HEALTH_WARN while any node is down or NotReady, else HEALTH_OK.
final class SimulatedWorkloads: Sendable {
    enum Kind: Sendable, Hashable {
        case deployment(replicas: Int)
        case daemonSet
    }

    struct Workload: Sendable, Hashable {
        var namespace: String
        var name: String
        var kind: Kind
        /// ReplicaSet name (`<name>-<hash>`) for a Deployment.
        var replicaSet: String { "\(name)-\(SimulatedNode.nix32(of: name).prefix(9))" }
    }

    struct State {
        var workloads: [Workload] = []
        var tasks: [UUID: Task<Void, Never>] = [:]
        var stopped = false
        var cephChecks = 0
        /// Per node: how many times its kubelet posted status (the node controller's grace timer compares).
        var kubeletPosts: [String: Int] = [:]
    }

    let kube: FakeKubeState
    let nodes: [String: SimulatedNode]
    let nodeOrder: [String]
    let speed: SimulationSpeed
    let timings: SimulatedTimings
    let clock: any AgentClock
    let logger: Logger
    let cephNamespace = "rook-ceph"
    let cephName = "rook-ceph"
    let cephCheckInterval: TimeInterval
    /// Whether Rook's toolbox Deployment runs (`SimulatedCluster.Options.cephToolbox`).
    let cephToolbox: Bool
    /// Simulated seconds without a kubelet heartbeat before the node controller marks a node Unknown.
    let nodeMonitorGracePeriod: TimeInterval
    let state = Mutex(State())
    /// Held for the whole of `syncStatus`: it reads the pods, then writes the counts, and two calls from different
    /// tasks could otherwise interleave so that the one that read first writes last — a stale count ("299/300
    /// available") that nothing corrects, because no later pod change comes to trigger another sync. The real
    /// DaemonSet and Deployment controllers sync one object at a time from a work queue (client-go
    /// `util/workqueue`: an item is never processed by two workers at once), so their status never goes back.
    private let statusSync = Mutex(())
    /// Held while a kubelet post or the node controller's "Unknown" changes a node and its pods, and while a post's
    /// delayed "pods ready" lands: otherwise the node controller could pass its "no post since" check, a new boot's
    /// post and its pods' start could land, and the controller would then mark the freshly posted node Unknown and
    /// its pods not ready — for good, since nothing posts again. In the real control plane the node lifecycle
    /// controller and the kubelet do not race this way: the kubelet posts every nodeStatusUpdateFrequency (10 s), so
    /// a wrong Unknown lasts one period.
    private let kubeletSync = Mutex(())
    let reconcileLock = Mutex(())

    init(
        kube: FakeKubeState, nodes: [SimulatedNode], speed: SimulationSpeed, timings: SimulatedTimings,
        cephCheckInterval: TimeInterval, nodeMonitorGracePeriod: TimeInterval = 40, cephToolbox: Bool = false,
        clock: any AgentClock, logger: Logger
    ) {
        self.cephToolbox = cephToolbox
        self.kube = kube
        self.nodes = Dictionary(uniqueKeysWithValues: nodes.map { ($0.hostname, $0) })
        self.nodeOrder = nodes.map(\.hostname)
        self.speed = speed
        self.timings = timings
        self.cephCheckInterval = cephCheckInterval
        self.nodeMonitorGracePeriod = nodeMonitorGracePeriod
        self.clock = clock
        self.logger = logger
    }

    // MARK: setup

    /// Registers the nodes, the default workloads (spread over the nodes), a PDB and the CephCluster, and
    /// starts following the nodes.
    func install(servers: Set<String>) {
        for name in nodeOrder {
            let snap = nodes[name]!.snapshot
            kube.addNode(
                name, ready: snap.kubeletReady, controlPlane: servers.contains(name), kernelVersion: snap.kernel,
                bootID: snap.bootID, osImage: Self.osImage(snap.nixosVersion),
                labels: ["nk3.dev/simulation": "true"])
        }
        var workloads = [
            Workload(namespace: "default", name: "web", kind: .deployment(replicas: 3)),
            Workload(namespace: "default", name: "api", kind: .deployment(replicas: 2)),
            Workload(namespace: "default", name: "node-exporter", kind: .daemonSet),
            Workload(namespace: "kube-system", name: "coredns", kind: .deployment(replicas: 2)),
            Workload(namespace: "kube-system", name: "metrics-server", kind: .deployment(replicas: 1)),
            Workload(namespace: "kube-system", name: "svclb-traefik", kind: .daemonSet),
        ]
        // Rook's toolbox (rook deploy/examples/toolbox.yaml): a one-replica Deployment labelled app=rook-ceph-tools.
        if cephToolbox { workloads.append(Workload(namespace: cephNamespace, name: "rook-ceph-tools", kind: .deployment(replicas: 1))) }
        state.withLock { $0.workloads = workloads }
        var slot = 0
        for w in workloads {
            switch w.kind {
            case .daemonSet:
                for n in nodeOrder { addPod(w, on: n, ready: nodes[n]!.snapshot.kubeletReady) }
            case .deployment(let replicas):
                for _ in 0..<replicas {
                    addPod(w, on: nodeOrder[slot % nodeOrder.count], ready: true)
                    slot += 1
                }
            }
        }
        // web keeps at least 2 of its 3 pods: a drain evicts one at a time and waits for the replacement.
        kube.addPodDisruptionBudget(
            namespace: "default", name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(2))
        kube.onEviction { [weak self] pod in self?.evicted(pod) }
        for name in nodeOrder {
            nodes[name]!.onEvent { [weak self] event in self?.nodeEvent(name, event) }
        }
        // A node whose kubelet came up after its pods were added above but before its handler existed would have
        // posted into the void, its DaemonSet pods not ready for good. Such a node posts once more now, as a
        // kubelet does every nodeStatusUpdateFrequency (10 s by default: kubelet config reference). (The
        // "999/1000 available" seen at 1,000 nodes turned out to be pod names colliding: see `addPod`.)
        for name in nodeOrder {
            let snap = nodes[name]!.snapshot
            guard snap.power == .up, snap.kubeletReady, kube.pods(onNode: name).contains(where: { !$0.isReady }) else { continue }
            postKubeletStatus(name, ready: true)
        }
        // The toolbox's `ceph status` sees Ceph as it is at that moment (not Rook's last copy).
        kube.setCephStatusSource { [weak self] in self?.cephStatusReport() ?? CephStatusReport(health: .init(status: "HEALTH_OK")) }
        syncStatus()
        checkCeph()
        spawn { w in
            while true {
                // At `.instant` the operator still checks once a second (no busy loop); node events add checks.
                let real = w.speed == .instant ? 1 : max(w.speed.realSeconds(w.cephCheckInterval), 0.02)
                try await w.clock.sleep(until: w.clock.now().addingTimeInterval(real))
                w.reconcile()
                w.checkCeph()
            }
        }
    }

    func stop() {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            s.stopped = true
            defer { s.tasks = [:] }
            return Array(s.tasks.values)
        }
        for t in tasks { t.cancel() }
    }

    static func osImage(_ version: String?) -> String {
        let series = (version ?? "24.05").split(separator: ".").prefix(2).joined(separator: ".")
        let codename = ["24.05": "Uakari", "24.11": "Vicuna", "25.05": "Warbler", "25.11": "Xantusia"][series] ?? "Simulated"
        return "NixOS \(series) (\(codename))"
    }

    // MARK: pods

    /// The characters of a generated name's suffix (k8s.io/apimachinery `pkg/util/rand`, `alphanums`: no vowels,
    /// no look-alike digits), five of them (k8s.io/apiserver `pkg/storage/names/generate.go`).
    static let nameAlphabet = Array("bcdfghjklmnpqrstvwxz2456789")

    @discardableResult
    func addPod(_ w: Workload, on node: String, ready: Bool) -> Pod {
        // A controller's pod name is `generateName` plus five random characters. With 1,000 nodes two pods of one
        // DaemonSet draw the same name (27^5 names: about a 3 % chance per DaemonSet; it was 38 % with the
        // 16^5 hex names used before, and the second pod silently replaced the first: "999/1000 available").
        // The API server refuses a name that exists (409 AlreadyExists) and the controller tries again; so here.
        let prefix = w.kind == .daemonSet ? w.name : w.replicaSet
        var name: String
        repeat {
            name = "\(prefix)-" + String((0..<5).map { _ in Self.nameAlphabet.randomElement()! })
        } while (kube.get(.pods, namespace: w.namespace, name: name) as Pod?) != nil
        let suffix = String(name.dropFirst(prefix.count + 1))
        switch w.kind {
        case .daemonSet:
            return kube.addPod(
                namespace: w.namespace, name: "\(w.name)-\(suffix)", node: node,
                labels: ["app": w.name], owner: ("DaemonSet", w.name), ready: ready)
        case .deployment:
            return kube.addPod(
                namespace: w.namespace, name: "\(w.replicaSet)-\(suffix)", node: node,
                labels: ["app": w.name, "pod-template-hash": String(w.replicaSet.suffix(9))],
                owner: ("ReplicaSet", w.replicaSet), ready: ready, emptyDir: w.name == "api")
        }
    }

    func pods(of w: Workload) -> [Pod] {
        let owner = w.kind == .daemonSet ? w.name : w.replicaSet
        return (kube.list(.pods, namespace: w.namespace) as [Pod]).filter {
            $0.metadata.controller?.name == owner && $0.metadata.deletionTimestamp == nil
        }
    }

    /// Nodes a new pod may go to: Ready and not cordoned.
    func schedulableNodes(excluding: String? = nil) -> [String] {
        let api = Dictionary(uniqueKeysWithValues: kube.nodes().compactMap { n in n.metadata.name.map { ($0, n) } })
        return nodeOrder.filter { name in
            guard name != excluding, let n = api[name] else { return false }
            return n.isReady && !n.isUnschedulable
        }
    }

    /// The ReplicaSet controller and scheduler: an evicted Deployment pod is recreated elsewhere.
    func evicted(_ pod: Pod) {
        guard state.withLock({ !$0.stopped }) else { return }
        logger.info(
            "[simulation] pod \(pod.metadata.namespace ?? "default")/\(pod.metadata.name ?? "?") evicted from \(pod.spec?.nodeName ?? "?")")
        reconcile(avoiding: pod.spec?.nodeName)
    }

    /// Brings every Deployment back to its replica count on schedulable nodes (fewest pods of it first).
    func reconcile(avoiding: String? = nil) {
        let workloads = state.withLock { $0.workloads }
        // One reconcile at a time (the periodic loop, evictions and node events all call it): two concurrent
        // passes would both see a missing replica and create two.
        let created: [(Workload, Pod)] = reconcileLock.withLock { _ in createMissingPods(workloads, avoiding: avoiding) }
        for (w, pod) in created {
            let name = pod.metadata.name ?? ""
            spawn { me in
                try await me.speed.sleep(me.timings.podStartup, on: me.clock)
                me.kube.setPodReady(namespace: w.namespace, name: name, true)
                me.syncStatus()
            }
        }
        syncStatus()
    }

    private func createMissingPods(_ workloads: [Workload], avoiding: String?) -> [(Workload, Pod)] {
        var created: [(Workload, Pod)] = []
        for w in workloads {
            guard case .deployment(let replicas) = w.kind else { continue }
            var current = pods(of: w)
            guard current.count < replicas else { continue }
            var candidates = schedulableNodes(excluding: avoiding)
            if candidates.isEmpty { candidates = schedulableNodes() }
            guard !candidates.isEmpty else { continue }
            while current.count < replicas {
                let target = candidates.min { a, b in
                    current.filter { $0.spec?.nodeName == a }.count < current.filter { $0.spec?.nodeName == b }.count
                }!
                let pod = addPod(w, on: target, ready: false)
                current.append(pod)
                created.append((w, pod))
                logger.info("[simulation] scheduled \(w.namespace)/\(pod.metadata.name ?? "?") on \(target)")
            }
        }
        return created
    }

    /// Derives DaemonSet and Deployment status from the pods (docs/UPSTREAM.md#rollout-status).
    func syncStatus() {
        statusSync.withLock { _ in syncStatusLocked() }
    }

    private func syncStatusLocked() {
        let workloads = state.withLock { $0.workloads }
        let nodeCount = nodeOrder.count
        for w in workloads {
            let ready = pods(of: w).filter { $0.isReady }.count
            // Like the real controllers, write status only when it changes (an unchanged write would still
            // bump resourceVersion and wake every watcher).
            switch w.kind {
            case .daemonSet:
                if let st = (kube.get(.daemonsets, namespace: w.namespace, name: w.name) as DaemonSet?)?.status,
                    st.desiredNumberScheduled == nodeCount, st.numberReady == ready, st.numberAvailable == ready
                { continue }
                kube.setDaemonSet(namespace: w.namespace, name: w.name, desired: nodeCount, available: ready, ready: ready)
            case .deployment(let replicas):
                let maxUnavailable = replicas / 4  // default 25%, rounded down
                let available = min(ready, replicas)
                if let st = (kube.get(.deployments, namespace: w.namespace, name: w.name) as Deployment?)?.status,
                    st.replicas == replicas, (st.availableReplicas ?? 0) == available
                { continue }
                kube.setDeployment(
                    namespace: w.namespace, name: w.name, replicas: replicas, available: min(ready, replicas),
                    minAvailable: replicas - maxUnavailable)
            }
        }
    }

    // MARK: nodes

    func nodeEvent(_ name: String, _ event: SimulatedNode.Event) {
        guard state.withLock({ !$0.stopped }) else { return }
        switch event {
        case .poweredDown:
            // Heartbeats stop; the API still shows the last status (Ready=True, the old boot id) until the node
            // controller's grace period passes without a post from the kubelet.
            let posts = state.withLock { $0.kubeletPosts[name, default: 0] }
            if nodeMonitorGracePeriod <= 0 {
                markUnknown(name, ifNoPostSince: posts)
            } else {
                spawn { me in
                    try await me.speed.sleep(me.nodeMonitorGracePeriod, on: me.clock)
                    me.markUnknown(name, ifNoPostSince: posts)
                }
            }
            if speed == .instant { checkCeph() }
        case .booted, .bootedWithoutAgent:
            break  // the kubelet of the new boot has not posted yet: the API shows nothing new
        case .kubelet(let ready):
            // A machine that is off posts nothing (its kubelet's "not ready" at power-down never reaches the API).
            guard let node = nodes[name], node.snapshot.power == .up else { return }
            postKubeletStatus(name, ready: ready)
        case .systemChanged:
            break
        }
    }

    /// The node controller: no kubelet post since `posts` → Ready Unknown, and the node's pods not ready
    /// (`MarkPodsNotReady`).
    func markUnknown(_ name: String, ifNoPostSince posts: Int) {
        kubeletSync.withLock { _ in
            guard state.withLock({ !$0.stopped && $0.kubeletPosts[name, default: 0] == posts }) else { return }
            logger.info("[simulation] node controller: no heartbeat from \(name) within the grace period; Ready is Unknown")
            kube.setNodeUnknown(name)
            setPods(onNode: name, ready: false)
        }
    }

    /// The kubelet posts its node status: this boot's id, kernel and OS image, and Ready. After a new boot its
    /// pods' containers start again: not ready until `podStartup` has passed.
    func postKubeletStatus(_ name: String, ready: Bool) {
        guard let node = nodes[name] else { return }
        let snap = node.snapshot
        let post: Int? = kubeletSync.withLock { _ in
            let post = state.withLock { s in
                s.kubeletPosts[name, default: 0] += 1
                return s.kubeletPosts[name, default: 0]
            }
            return applyPost(name, snap: snap, ready: ready) ? post : nil
        }
        guard let post else { return }
        spawn { me in
            try await me.speed.sleep(me.timings.podStartup, on: me.clock)
            // Only if no later post came meanwhile (that one decides the pods) and the machine is still up (a
            // machine that went down since has its pods marked not ready by the node controller).
            me.kubeletSync.withLock { _ in
                guard me.state.withLock({ $0.kubeletPosts[name, default: 0] == post }),
                    me.nodes[name]?.snapshot.power == .up
                else { return }
                me.setPods(onNode: name, ready: true)
            }
            me.reconcile()
            // With instant operations a Ceph check follows the return at once, so gates need not wait
            // for the once-a-second check; otherwise the periodic check (docs/UPSTREAM.md#rook-cephcluster) sees it.
            if me.speed == .instant { me.checkCeph() }
        }
    }

    /// One kubelet post, under `kubeletSync`; true when the node is Ready (its pods start after `podStartup`).
    private func applyPost(_ name: String, snap: SimulatedNode.Snapshot, ready: Bool) -> Bool {
        var newBoot = false
        kube.update(.nodes, name: name, as: Node.self) { n in
            if n.status == nil { n.status = NodeStatus() }
            var info = n.status?.nodeInfo ?? NodeSystemInfo()
            newBoot = info.bootID != snap.bootID
            info.bootID = snap.bootID
            info.kernelVersion = snap.kernel
            info.osImage = Self.osImage(snap.nixosVersion)
            n.status?.nodeInfo = info
        }
        kube.setNodeReady(name, ready)
        if newBoot || !ready { setPods(onNode: name, ready: false) }
        return ready
    }

    func setPods(onNode name: String, ready: Bool) {
        for pod in kube.pods(onNode: name) where pod.metadata.deletionTimestamp == nil {
            guard let podName = pod.metadata.name, pod.isReady != ready else { continue }
            kube.setPodReady(namespace: pod.metadata.namespace ?? "default", name: podName, ready)
        }
        syncStatus()
    }

    // MARK: ceph (docs/UPSTREAM.md#rook-cephcluster)

    /// Ceph's own view now: HEALTH_WARN with OSD_DOWN/PG_DEGRADED while any node is down or NotReady.
    func cephView() -> (health: String, details: [String: CephHealthMessage], down: Int) {
        let down = nodeOrder.filter { n in
            let s = nodes[n]!.snapshot
            return s.power == .down || !s.kubeletReady
        }
        var details: [String: CephHealthMessage] = [:]
        if !down.isEmpty {
            details["OSD_DOWN"] = CephHealthMessage(
                severity: "HEALTH_WARN", message: "\(down.count) osds down")
            details["PG_DEGRADED"] = CephHealthMessage(
                severity: "HEALTH_WARN",
                message: "Degraded data redundancy: \(down.count * 41)/\(nodeOrder.count * 123) objects degraded")
        }
        return (down.isEmpty ? "HEALTH_OK" : "HEALTH_WARN", details, down.count)
    }

    /// What `ceph status -f json` prints now (the toolbox's answer): `cephView` with a pgmap to match — 128 PGs,
    /// those on the down OSDs' share `active+undersized+degraded`.
    func cephStatusReport() -> CephStatusReport {
        let view = cephView()
        let total = 128
        let degraded = nodeOrder.isEmpty ? 0 : min(total, total * view.down / nodeOrder.count)
        var states = [CephStatusReport.PGState(state_name: "active+clean", count: total - degraded)]
        if degraded > 0 { states.append(CephStatusReport.PGState(state_name: "active+undersized+degraded", count: degraded)) }
        return CephStatusReport(
            health: .init(
                status: view.health,
                checks: view.details.mapValues { CephStatusReport.Check(severity: $0.severity, message: $0.message, count: view.down) }),
            pgmap: .init(pgs_by_state: states, num_pgs: total, num_pools: 3, num_objects: nodeOrder.count * 123))
    }

    /// One Rook status check: copies `cephView` into the CephCluster's status.
    func checkCeph() {
        let view = cephView()
        kube.setCephHealth(
            namespace: cephNamespace, name: cephName, health: view.health, details: view.details, lastChecked: clock.now())
        state.withLock { $0.cephChecks += 1 }
    }

    var cephChecks: Int { state.withLock { $0.cephChecks } }

    // MARK: faults

    /// Adds a pod on `node` guarded by a PDB that never allows an eviction (minAvailable 1 of 1).
    func blockEvictions(on node: String) {
        let label = "pinned-\(node)"
        kube.addPod(
            namespace: "default", name: "\(label)-0", node: node, labels: ["app": label],
            owner: ("ReplicaSet", "\(label)-rs"), ready: true)
        kube.addPodDisruptionBudget(namespace: "default", name: label, matchLabels: ["app": label], minAvailable: .int(1))
        logger.info("[simulation] fault: PodDisruptionBudget default/\(label) never allows evicting default/\(label)-0")
    }

    /// The budget covers a Ready pod on `node` and an unready one that is not on any simulated node (a replica still
    /// starting elsewhere): currentHealthy 1 = desiredHealthy 1, so disruptionsAllowed is 0 until it is Ready
    /// (kubernetes/kubernetes pkg/controller/disruption/disruption.go), but the budget is not one that can never allow.
    func holdEvictions(on node: String) {
        let label = "held-\(node)"
        kube.addPod(
            namespace: "default", name: "\(label)-0", node: node, labels: ["app": label],
            owner: ("ReplicaSet", "\(label)-rs"), ready: true)
        kube.addPod(
            namespace: "default", name: "\(label)-1", node: "elsewhere", labels: ["app": label],
            owner: ("ReplicaSet", "\(label)-rs"), ready: false)
        kube.addPodDisruptionBudget(namespace: "default", name: label, matchLabels: ["app": label], minAvailable: .int(1))
        logger.info("[simulation] fault: PodDisruptionBudget default/\(label) allows no eviction of default/\(label)-0 until its other pod is Ready")
    }

    func unholdEvictions(on node: String) {
        let label = "held-\(node)"
        kube.delete(.poddisruptionbudgets, namespace: "default", name: label)
        kube.delete(.pods, namespace: "default", name: "\(label)-0")
        kube.delete(.pods, namespace: "default", name: "\(label)-1")
    }

    func unblockEvictions(on node: String) {
        let label = "pinned-\(node)"
        kube.delete(.poddisruptionbudgets, namespace: "default", name: label)
        kube.delete(.pods, namespace: "default", name: "\(label)-0")
    }

    // MARK: tasks

    private func spawn(_ body: @escaping @Sendable (SimulatedWorkloads) async throws -> Void) {
        let id = UUID()
        state.withLock { s in
            guard !s.stopped else { return }
            s.tasks[id] = Task { [self] in
                try? await body(self)
                _ = state.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }
}
