import Foundation
import NK3Kube

/// Gate factories: each is a thin fetch through `KubeAPI` followed by the pure rule in `GateLogic`.
public enum HealthGates {
    /// Every node's kubelet Ready. A list on the first check; while the gate waits, a watch (see `NodeWatch`).
    public static func kubeletReady(_ kube: any KubeAPI, period: Duration = .milliseconds(100)) -> HealthGate {
        kubeletReady(kube, period: period, nodes: NodeWatch(kube))
    }

    /// The kubelet gate over `nodes` (a rollout passes one watch for all its gate waits).
    static func kubeletReady(_ kube: any KubeAPI, period: Duration, nodes: NodeWatch) -> HealthGate {
        return HealthGate(name: "kubelet ready on every node", period: period) {
            let result = GateLogic.kubeletReady(nodes: try await nodes.nodes())
            if result.passed { nodes.passed() }
            return result
        }
    }

    /// Every DaemonSet in `namespace` available and observed.
    public static func daemonSets(
        _ kube: any KubeAPI, namespace: String, rule: WorkloadHealthRule = .available, period: Duration = .milliseconds(100)
    ) -> HealthGate {
        HealthGate(name: "daemonsets in namespace \(namespace)", period: period) {
            GateLogic.daemonSets(try await kube.listDaemonSets(namespace: namespace), namespace: namespace, rule: rule)
        }
    }

    /// The DaemonSet gate over a rollout's watch of `namespace`'s DaemonSets (`WorkloadWatches`).
    static func daemonSets(
        namespace: String, rule: WorkloadHealthRule, period: Duration, watched: WatchedList<DaemonSet>
    ) -> HealthGate {
        HealthGate(name: "daemonsets in namespace \(namespace)", period: period) {
            GateLogic.daemonSets(try await watched.items(), namespace: namespace, rule: rule)
        }
    }

    /// The Deployment gate over a rollout's watch of `namespace`'s Deployments (`WorkloadWatches`).
    static func deployments(
        namespace: String, rule: WorkloadHealthRule, period: Duration, watched: WatchedList<Deployment>
    ) -> HealthGate {
        HealthGate(name: "deployments in namespace \(namespace)", period: period) {
            GateLogic.deployments(try await watched.items(), namespace: namespace, rule: rule)
        }
    }

    /// Every Deployment in `namespace` Available.
    public static func deployments(
        _ kube: any KubeAPI, namespace: String, rule: WorkloadHealthRule = .available, period: Duration = .milliseconds(100)
    ) -> HealthGate {
        HealthGate(name: "deployments in namespace \(namespace)", period: period) {
            GateLogic.deployments(try await kube.listDeployments(namespace: namespace), namespace: namespace, rule: rule)
        }
    }

    /// Ceph healthy. Sources, in order (docs/DEPLOYING.md, "The Ceph gate"):
    /// 1. with `toolbox`, `ceph status -f json` in a Running, Ready pod of Rook's toolbox in `namespace`
    ///    (`CephToolbox`): Ceph's own answer, fresh by construction, so no wait for Rook's refresh;
    /// 2. otherwise Rook's CephCluster status, checked after `checkedAfter` (a local time, compared on the cluster's
    ///    clock: `KubeAPI.clusterTime`). Rook refreshes it about once a minute, so polling it faster than every
    ///    200 ms gains nothing.
    /// An exec that fails (no `create` on `pods/exec`, a non-zero exit, no JSON) is reported once as a warning and
    /// the gate keeps to the CephCluster status from then on. Without a toolbox the gate looks for one again at most
    /// every `toolboxRelook` (10 s), not on every poll. No CephCluster and no toolbox stops the gates at once.
    /// Each line names the source that judged.
    public static func ceph(
        _ kube: any KubeAPI, namespace: String = "rook-ceph", name: String = "rook-ceph", checkedAfter: Date?,
        tolerated: Set<String> = GateLogic.toleratedCephChecks, toolbox: Bool = true, period: Duration = .milliseconds(200),
        toolboxRelook: Duration = .seconds(10)
    ) -> HealthGate {
        let lookup = CephToolboxLookup(enabled: toolbox, relook: toolboxRelook)
        return HealthGate(name: "ceph health (CephCluster \(namespace)/\(name))", period: period) {
            var warning: GateReport? = nil
            var toolboxPod: Pod? = nil
            if lookup.usable {
                do {
                    toolboxPod = try await lookup.pod { try await CephToolbox.pod(kube, namespace: namespace) }
                    if let pod = toolboxPod {
                        do {
                            let report = try await CephToolbox.status(kube, pod: pod)
                            return GateLogic.ceph(status: report, tolerated: tolerated, source: "ceph status in \(pod.qualifiedName)")
                        } catch let e as KubeError where e.code == .notFound {
                            // The pod is gone (evicted by a drain, replaced): look for its successor next round.
                            lookup.forget()
                            toolboxPod = nil
                        }
                    }
                } catch let e as CancellationError {
                    throw e
                } catch {
                    // Once, not a retry loop: RBAC (no `list` on pods, no `get`/`create` on pods/exec) or a broken
                    // toolbox will not change while the gate waits.
                    lookup.markBroken()
                    let why = (error as? KubeError)?.message ?? "\(error)"
                    let target = toolboxPod.map { "in \($0.qualifiedName)" } ?? "(cannot list the toolbox pods in \(namespace))"
                    warning = GateReport(
                        status: .warning,
                        message: "cannot run ceph status \(target) (\(why)); judging by CephCluster \(namespace)/\(name) instead")
                }
            }
            let cluster: CephCluster
            do {
                cluster = try await kube.getCephCluster(namespace: namespace, name: name)
            } catch let e as KubeError where e.code == .notFound && (toolboxPod == nil || !lookup.usable) {
                // No such CephCluster (or no CephCluster resource at all: Rook's CRDs are not installed) and no
                // toolbox to ask. Waiting does not create one, so the gate stops at once instead of retrying until
                // its timeout.
                var missing = GateLogic.cephClusterMissing(namespace: namespace, name: name, error: e)
                if let warning { missing.lines.insert(warning, at: 0) }
                return missing
            }
            // Rook stamps lastChecked with the operator's clock, a cluster node's: compare on the API server's clock
            // (its answers' Date header), not the workstation's, whose skew would make an old check look fresh.
            var result = GateLogic.ceph(
                cluster, checkedAfter: checkedAfter.map { kube.clusterTime(at: $0) }, tolerated: tolerated,
                source: "CephCluster \(namespace)/\(name)")
            if let warning { result.lines.insert(warning, at: 0) }
            return result
        }
    }

    /// The standard set, in the Python nk3's output order: kubelet Ready; per watched namespace DaemonSets, then
    /// Deployments; then Ceph if a CephCluster is named.
    public static func standard(
        _ kube: any KubeAPI, watchNamespaces: [String], ceph: (namespace: String, name: String)? = nil,
        since: Date? = nil, rule: WorkloadHealthRule = .available, period: Duration = .milliseconds(100)
    ) -> [HealthGate] {
        standard(
            kube, watchNamespaces: watchNamespaces, ceph: ceph, since: since, rule: rule, period: period, nodes: nil,
            workloads: nil)
    }

    /// The standard set; `nodes`: the node watch the kubelet gate reads (nil: its own, for this wait only);
    /// `workloads`: the DaemonSet and Deployment watches of the namespaces (nil, or a namespace it lacks: a list per check).
    static func standard(
        _ kube: any KubeAPI, watchNamespaces: [String], ceph: (namespace: String, name: String)?,
        since: Date?, rule: WorkloadHealthRule, period: Duration, nodes: NodeWatch?, workloads: WorkloadWatches?
    ) -> [HealthGate] {
        var gates = [kubeletReady(kube, period: period, nodes: nodes ?? NodeWatch(kube))]
        gates += watchNamespaces.map { ns in
            workloads?.daemonSets[ns].map { daemonSets(namespace: ns, rule: rule, period: period, watched: $0) }
                ?? daemonSets(kube, namespace: ns, rule: rule, period: period)
        }
        gates += watchNamespaces.map { ns in
            workloads?.deployments[ns].map { deployments(namespace: ns, rule: rule, period: period, watched: $0) }
                ?? deployments(kube, namespace: ns, rule: rule, period: period)
        }
        if let ceph { gates.append(Self.ceph(kube, namespace: ceph.namespace, name: ceph.name, checkedAfter: since)) }
        return gates
    }
}

/// Runs `gates` until all pass in the same round, or throws `HealthGateError` at `deadline` naming the
/// gates still failing and why. Checks run concurrently each round; between rounds it waits a few ms at
/// first, growing to the shortest `period` of the failing gates (`PollPace`; no fixed-second sleeps). Each human line is passed to `report` the first
/// time it appears and whenever it changes — not on every poll. Returns the passing results, in gate order.
/// Errors that waiting cannot fix (unauthorized, forbidden, kubeconfig) stop it early.
public func waitUntilHealthy<C: Clock<Duration>>(
    _ gates: [HealthGate], deadline: C.Instant, clock: C,
    report: (@Sendable (GateReport) -> Void)? = nil
) async throws -> [GateResult] {
    var lastLines: [String: [GateReport]] = [:]
    let start = clock.now
    while true {
        let results = await withTaskGroup(of: (Int, Result<GateResult, any Error>).self) { group in
            for (i, gate) in gates.enumerated() {
                group.addTask { (i, await runOnce(gate, clock: clock)) }
            }
            var out = [Result<GateResult, any Error>?](repeating: nil, count: gates.count)
            for await (i, r) in group { out[i] = r }
            return out.map { $0! }
        }
        var failing: [(gate: HealthGate, why: String)] = []
        var passed: [GateResult] = []
        for (gate, result) in zip(gates, results) {
            switch result {
            case .success(let r):
                if lastLines[gate.name] != r.lines {
                    lastLines[gate.name] = r.lines
                    for line in r.lines { report?(line) }
                }
                if r.unrecoverable {
                    throw HealthGateError(
                        .unrecoverable, failingGates: [gate.name],
                        message: "health gate '\(gate.name)' cannot pass by waiting: \(r.failure ?? "not healthy")")
                }
                if r.passed { passed.append(r) } else { failing.append((gate, r.failure ?? "not healthy")) }
            case .failure(let error):
                if let k = error as? KubeError, [.unauthorized, .forbidden, .config].contains(k.code) {
                    throw HealthGateError(
                        .unrecoverable, failingGates: [gate.name],
                        message: "health gate '\(gate.name)' cannot be checked: \(k.message); fix the kubeconfig's credentials or RBAC")
                }
                failing.append((gate, "check failed: \(error)"))
            }
        }
        if failing.isEmpty { return passed }
        // Paced (`PollPace`): a gate that turns true moments after the first round (DaemonSet pods restarting
        // on a node that just came back) is seen within milliseconds; a long wait polls once per period.
        let period = failing.map(\.gate.period).min() ?? .milliseconds(100)
        let pause = PollPace.delay(waited: start.duration(to: clock.now), interval: period)
        if clock.now.advanced(by: pause) > deadline {
            let names = failing.map(\.gate.name)
            let whys = failing.map { "'\($0.gate.name)': \($0.why)" }.joined(separator: "; ")
            throw HealthGateError(
                .timeout, failingGates: names,
                message: "health gates did not pass within \(start.duration(to: clock.now)): \(whys)")
        }
        try await clock.sleep(for: pause)
    }
}

/// One check under its timeout.
private func runOnce<C: Clock<Duration>>(_ gate: HealthGate, clock: C) async -> Result<GateResult, any Error> {
    await withTaskGroup(of: Result<GateResult, any Error>?.self) { group in
        group.addTask {
            do { return .success(try await gate.check()) } catch { return .failure(error) }
        }
        group.addTask {
            do { try await clock.sleep(for: gate.timeout) } catch { return nil }
            return .failure(KubeError(.timeout, "check of '\(gate.name)' took longer than \(gate.timeout)"))
        }
        var result: Result<GateResult, any Error> = .failure(CancellationError())
        for await r in group {
            if let r {
                result = r
                group.cancelAll()
                break
            }
        }
        return result
    }
}
