import Foundation
import NK3Kube

/// Controllers that change objects behind the API's back, modelled as steps the test or simulator runs (never on a
/// timer of their own) — a SIMULATION: the node-lifecycle controller's unschedulable taint and the Rook operator's
/// CephCluster status refresh. Also a namespace's termination, for evictions.
extension FakeKubeState {
    /// The taint the node-lifecycle controller keeps on a cordoned node.
    public static let unschedulableTaintKey = "node.kubernetes.io/unschedulable"

    /// One pass of the node-lifecycle controller's NoSchedule tainting: a node whose `spec.unschedulable` is true
    /// gets `node.kubernetes.io/unschedulable:NoSchedule`, any other loses it (kubernetes/kubernetes
    /// pkg/controller/nodelifecycle/node_lifecycle_controller.go `doNoScheduleTaintingPass`). The real controller
    /// does this asynchronously, some time after the cordon; here it happens when this is called. Returns the
    /// nodes it changed.
    @discardableResult
    public func runNodeLifecyclePass(now: Date = Date()) -> [String] {
        store.withLock { s in
            var changed: [String] = []
            for key in s.keys(.nodes, namespace: nil) {
                guard let node = s.objects[.nodes]?[key], case .object(var o) = node else { continue }
                let cordoned = node["spec"]?["unschedulable"] == .bool(true)
                var taints: [JSONValue] = []
                if case .array(let t)? = node["spec"]?["taints"] { taints = t }
                let has = taints.contains { $0["key"] == .string(Self.unschedulableTaintKey) }
                guard cordoned != has else { continue }
                if cordoned {
                    taints.append(
                        .object([
                            "key": .string(Self.unschedulableTaintKey), "effect": .string("NoSchedule"),
                            "timeAdded": .string(KubeTime.format(now)),
                        ]))
                } else {
                    taints.removeAll { $0["key"] == .string(Self.unschedulableTaintKey) }
                }
                var spec: [String: JSONValue] = [:]
                if case .object(let sp)? = o["spec"] { spec = sp }
                spec["taints"] = taints.isEmpty ? nil : .array(taints)
                o["spec"] = .object(spec)
                let updated = FakeKubeStrict.recordUpdate(
                    old: node, new: .object(o), manager: "kube-controller-manager", apiVersion: "v1", now: now)
                _ = s.store(.nodes, updated)
                changed.append(key)
            }
            return changed
        }
    }

    /// Marks a namespace as being deleted (or not): evictions in it are refused with 403 and the cause
    /// `NamespaceTerminating`, as the namespace lifecycle admission plugin refuses new content there.
    public func setNamespaceTerminating(_ namespace: String, _ terminating: Bool = true) {
        store.withLock { s in
            if terminating { s.terminatingNamespaces.insert(namespace) } else { s.terminatingNamespaces.remove(namespace) }
        }
    }

    // MARK: - Rook operator

    /// What `ceph status` would say now (Ceph's own view), which the Rook operator copies into the CephCluster's
    /// `status.ceph` only at its next check (`runRookStatusCheck`).
    public func setCephHealthAsCephSees(health: String, details: [String: CephHealthMessage] = [:]) {
        rook.withLock { $0.health = (health, details) }
    }

    /// Where the toolbox's `ceph status` gets Ceph's view from at the moment it runs (the simulated cluster derives it
    /// from its nodes); without one, the view set by `setCephHealthAsCephSees`, else the CephCluster's last status.
    public func setCephStatusSource(_ source: (@Sendable () -> CephStatusReport)?) {
        rook.withLock { $0.source = source }
    }

    /// Refuses `pods/exec` with 403, as RBAC does for a user without `create` on `pods/exec`.
    public func setExecForbidden(_ forbidden: Bool = true) {
        store.withLock { $0.execForbidden = forbidden }
    }

    /// What `ceph status -f json` in the toolbox of `namespace` prints now, or nil when no Ceph state is known.
    func cephStatusNow(namespace: String, name: String = "rook-ceph") -> CephStatusReport? {
        let (source, seen) = rook.withLock { ($0.source, $0.health) }
        if let source { return source() }
        let health: String
        let details: [String: CephHealthMessage]
        if let seen {
            (health, details) = seen
        } else if let ceph = (get(.cephclusters, namespace: namespace, name: name) as CephCluster?)?.status?.ceph, let h = ceph.health {
            (health, details) = (h, ceph.details ?? [:])
        } else {
            return nil
        }
        return CephStatusReport(
            health: .init(
                status: health,
                checks: details.mapValues { CephStatusReport.Check(severity: $0.severity, message: $0.message, count: 1) }))
    }

    /// One tick of the Rook operator's status loop at `now`: if no check ran yet or `interval` has passed since the
    /// last one, copies Ceph's health into the CephCluster's `status.ceph` with `lastChecked = now` in whole seconds
    /// (`time.Now().UTC().Format(time.RFC3339)` in rook/rook cephstatus.go). Returns whether a check ran.
    @discardableResult
    public func runRookStatusCheck(
        now: Date, namespace: String = "rook-ceph", name: String = "rook-ceph"
    ) -> Bool {
        let due: (String, [String: CephHealthMessage])? = rook.withLock { r in
            guard let health = r.health else { return nil }
            if let last = r.lastCheck, now.timeIntervalSince(last) < Double(r.interval.components.seconds) { return nil }
            r.lastCheck = now
            return health
        }
        guard let due else { return false }
        let (health, details) = due
        setCephHealth(
            namespace: namespace, name: name, health: health, details: details,
            lastChecked: Date(timeIntervalSince1970: floor(now.timeIntervalSince1970)))
        return true
    }
}

/// The Rook operator model's state (see `FakeKubeState.runRookStatusCheck`).
struct FakeRookOperator {
    var interval: Duration = .seconds(60)
    var health: (String, [String: CephHealthMessage])? = nil
    var lastCheck: Date? = nil
    var source: (@Sendable () -> CephStatusReport)? = nil
}
