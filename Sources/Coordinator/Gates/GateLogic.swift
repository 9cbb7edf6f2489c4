import Foundation
import NK3Kube

/// The health-gate rules as pure functions over decoded API objects: unit-testable on JSON fixtures.
public enum GateLogic {
    /// Ceph health checks whose lone presence in HEALTH_WARN is tolerated (reported as a warning): clock
    /// skew between monitors and an archived-later crash report do not endanger data.
    public static let toleratedCephChecks: Set<String> = ["MON_CLOCK_SKEW", "RECENT_CRASH"]

    /// Every node's kubelet is Ready: condition `Ready` is `True` with reason `KubeletReady`
    /// (docs/UPSTREAM.md#nodes; `Unknown`/`NodeStatusUnknown` means heartbeats stopped).
    public static func kubeletReady(nodes: [Node]) -> GateResult {
        var lines: [GateReport] = []
        var notReady: [String] = []
        for node in nodes.sorted(by: { $0.name < $1.name }) {
            let c = node.readyCondition
            if c?.status == "True" && c?.reason == "KubeletReady" {
                lines.append(GateReport(status: .ok, message: "kubelet is ready on \(node.name)", node: node.name))
            } else {
                let why = c.map { "\($0.status)\($0.reason.map { "/\($0)" } ?? "")\($0.message.map { ": \($0)" } ?? "")" } ?? "no Ready condition"
                lines.append(GateReport(status: .waiting, message: "kubelet is not ready on \(node.name) (\(why))", node: node.name))
                notReady.append("\(node.name) (\(why))")
            }
        }
        if nodes.isEmpty {
            return GateResult(passed: false, lines: [GateReport(status: .waiting, message: "no nodes registered yet")], failure: "the API lists no nodes")
        }
        return GateResult(
            passed: notReady.isEmpty, lines: lines,
            failure: notReady.isEmpty ? nil : "kubelet not ready on \(notReady.joined(separator: ", "))")
    }

    /// Whether `node`'s Ready condition counts for the boot `boot` (nil: any). After a reboot the node
    /// controller leaves a node Ready=True until `--node-monitor-grace-period` (40–50 s) passes without a
    /// heartbeat (https://kubernetes.io/docs/concepts/architecture/nodes/#node-controller), so Ready counts
    /// only when the kubelet of the new boot posted it: `status.nodeInfo.bootID` equals the agent's boot id
    /// (both read `/proc/sys/kernel/random/boot_id`), or — where the API shows no boot id — the Ready
    /// condition's `lastHeartbeatTime` is later than `boot.since` (whole seconds: strictly later).
    public static func readiness(of node: Node, boot: NodeBoot?) -> NodeReadiness {
        guard let c = node.readyCondition, c.status == "True" else {
            let c = node.readyCondition
            return .notReady(c.map { "\($0.status)\($0.reason.map { "/\($0)" } ?? "")" } ?? "no Ready condition")
        }
        guard let boot else { return .ready }
        let normalized = { (s: String) in s.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() }
        if let api = node.status?.nodeInfo?.bootID, !normalized(api).isEmpty {
            return normalized(api) == normalized(boot.bootID) ? .ready : .previousBoot(apiBootID: api)
        }
        if let since = boot.since, let beat = c.lastHeartbeatTime.flatMap(KubeTime.parse), beat > since {
            return .ready
        }
        return .previousBoot(apiBootID: nil)
    }

    /// Whether a check stamped `stamped` (parsed: `checked`) counts as made after `after`: exactly, when the
    /// stamp has a fraction; to the second, when it has none (the stamp cannot say which part of its second).
    static func isFresh(checked: Date, stamped: String, after: Date) -> Bool {
        if stamped.contains(".") { return checked > after }
        return checked >= Date(timeIntervalSince1970: floor(after.timeIntervalSince1970))
    }

    /// Whether one DaemonSet is healthy: the controller saw its current spec (`observedGeneration >=
    /// generation`) and `numberAvailable == desiredNumberScheduled` (kubectl pkg/polymorphichelpers/rollout_status.go);
    /// nil if healthy, else why not.
    public static func daemonSetProblem(_ ds: DaemonSet) -> String? {
        let s = ds.status ?? DaemonSetStatus()
        if let gen = ds.metadata.generation, s.observedGeneration < gen {
            return "\(ds.name): spec generation \(gen) not yet observed (observed \(s.observedGeneration))"
        }
        if s.numberAvailable != s.desiredNumberScheduled {
            return "\(ds.name): \(s.numberAvailable)/\(s.desiredNumberScheduled) available"
        }
        return nil
    }

    /// Every DaemonSet in `namespace` is healthy. Lines: "N daemonsets healthy in namespace ns", or
    /// "N daemonsets recovering in namespace ns" (N = the ones not yet healthy).
    public static func daemonSets(_ list: [DaemonSet], namespace: String, rule: WorkloadHealthRule = .available) -> GateResult {
        let problem = rule == .available ? daemonSetProblem : daemonSetRolloutProblem
        let problems = list.sorted { $0.name < $1.name }.compactMap(problem)
        if problems.isEmpty {
            return GateResult(passed: true, lines: [GateReport(status: .ok, message: "\(list.count) daemonsets healthy in namespace \(namespace)")])
        }
        return GateResult(
            passed: false,
            lines: [GateReport(status: .waiting, message: "\(problems.count) daemonsets recovering in namespace \(namespace)")],
            failure: "daemonsets in \(namespace) not healthy: \(problems.joined(separator: "; "))")
    }

    /// Whether one Deployment is healthy: its `Available` condition is `True` (reason
    /// `MinimumReplicasAvailable`, docs/UPSTREAM.md#rollout-status); nil if healthy, else why not.
    public static func deploymentProblem(_ d: Deployment) -> String? {
        guard let c = d.availableCondition else { return "\(d.name): no Available condition yet" }
        if c.isTrue { return nil }
        let avail = d.status?.availableReplicas ?? 0
        let want = d.spec?.replicas.map(String.init) ?? "?"
        return "\(d.name): Available=\(c.status)\(c.reason.map { "/\($0)" } ?? "") (\(avail)/\(want) replicas available)"
    }

    /// Every Deployment in `namespace` is available. Lines: "N deployments healthy in namespace ns" or
    /// "N deployments recovering in namespace ns".
    public static func deployments(_ list: [Deployment], namespace: String, rule: WorkloadHealthRule = .available) -> GateResult {
        var final = false
        let problems = list.sorted { $0.name < $1.name }.compactMap { d -> String? in
            switch rule {
            case .available: return deploymentProblem(d)
            case .rolloutStatus:
                guard let p = deploymentRolloutProblem(d) else { return nil }
                final = final || p.final
                return p.why
            }
        }
        if problems.isEmpty {
            return GateResult(passed: true, lines: [GateReport(status: .ok, message: "\(list.count) deployments healthy in namespace \(namespace)")])
        }
        return GateResult(
            passed: false,
            lines: [GateReport(status: .waiting, message: "\(problems.count) deployments recovering in namespace \(namespace)")],
            failure: "deployments in \(namespace) not available: \(problems.joined(separator: "; "))", unrecoverable: final)
    }

    /// The Ceph gate's answer when the API has no CephCluster `namespace/name` (404) and no running toolbox:
    /// unrecoverable, naming the inventory keys that point there.
    public static func cephClusterMissing(namespace: String, name: String, error: KubeError) -> GateResult {
        GateResult(
            passed: false, lines: [GateReport(status: .failed, message: "ceph state is unknown: no CephCluster \(namespace)/\(name) and no Rook toolbox")],
            failure: "the API has no CephCluster \(namespace)/\(name) (\(error.message)) and no running Rook toolbox (pods labelled \(CephToolbox.labelSelector)) in \(namespace): set the inventory's ceph.namespace "
                + "and ceph.name to Rook's CephCluster, or ceph.enabled: false on a cluster without Rook",
            unrecoverable: true)
    }

    /// Ceph is healthy per Rook's CephCluster status (docs/UPSTREAM.md#rook-cephcluster): HEALTH_OK, or HEALTH_WARN
    /// whose single check is in `tolerated` (passes, reported as a warning) — and only if `status.ceph.lastChecked`
    /// is not before `checkedAfter` (the moment the node came back): Rook refreshes about every 60 s, so an
    /// older HEALTH_OK says nothing about the node that just returned. Rook stamps `lastChecked` in whole
    /// seconds (RFC 3339 without a fraction), so a check stamped in the same second as the return may have
    /// run after it and counts as fresh; refusing it would cost a whole refresh interval. `source` (e.g.
    /// "CephCluster rook-ceph/rook-ceph") is named at the end of the line.
    public static func ceph(
        _ cluster: CephCluster, checkedAfter: Date?, tolerated: Set<String> = toleratedCephChecks, source: String? = nil
    ) -> GateResult {
        let name = "\(cluster.metadata.namespace ?? "")/\(cluster.metadata.name ?? "")"
        let via = source.map { " via \($0)" } ?? ""
        guard let ceph = cluster.status?.ceph, let health = ceph.health else {
            return GateResult(
                passed: false, lines: [GateReport(status: .waiting, message: "ceph state is unknown\(via)")],
                failure: "CephCluster \(name) reports no status.ceph.health yet")
        }
        let line = "ceph state is \(health)"
        if let after = checkedAfter {
            guard let text = ceph.lastChecked, let checked = KubeTime.parse(text) else {
                return GateResult(
                    passed: false, lines: [GateReport(status: .waiting, message: "\(line) (not yet re-checked)\(via)")],
                    failure: "CephCluster \(name) has no parsable status.ceph.lastChecked")
            }
            if !isFresh(checked: checked, stamped: text, after: after) {
                return GateResult(
                    passed: false, lines: [GateReport(status: .waiting, message: "\(line) (stale: checked \(text), before \(KubeTime.format(after)))\(via)")],
                    failure: "ceph state \(health) was last checked at \(text), not after \(KubeTime.format(after)); waiting for Rook's next check (about every 60 s)")
            }
        }
        let checks = (ceph.details ?? [:]).mapValues(\.message)
        return cephHealth(health, checks: checks, tolerated: tolerated, via: via)
    }

    /// Ceph is healthy per `ceph status -f json` run in Rook's toolbox: the same rule as `ceph(_:checkedAfter:)`
    /// (HEALTH_OK, or HEALTH_WARN with one tolerated check), with no freshness wait — Ceph answered just now, after
    /// the node came back. `source` (e.g. "ceph status in rook-ceph/rook-ceph-tools-…") ends the line.
    public static func ceph(status report: CephStatusReport, tolerated: Set<String> = toleratedCephChecks, source: String) -> GateResult {
        let checks = (report.health.checks ?? [:]).mapValues(\.summary.message)
        return cephHealth(report.health.status, checks: checks, tolerated: tolerated, via: " via \(source)")
    }

    /// The shared health rule: HEALTH_OK passes; HEALTH_WARN whose single check is tolerated passes as a warning.
    static func cephHealth(_ health: String, checks: [String: String], tolerated: Set<String>, via: String) -> GateResult {
        let line = "ceph state is \(health)"
        let codes = checks.keys.sorted()
        switch health {
        case "HEALTH_OK":
            return GateResult(passed: true, lines: [GateReport(status: .ok, message: line + via)])
        // A lone MON_CLOCK_SKEW or RECENT_CRASH warning is tolerated (README.md, "How it stays safe"): one check,
        // and a tolerated one.
        case "HEALTH_WARN" where codes.count == 1 && tolerated.contains(codes[0]):
            return GateResult(passed: true, lines: [GateReport(status: .warning, message: "\(line) (tolerated: \(codes.joined(separator: ", ")))\(via)")])
        default:
            let detail = codes.map { "\($0): \(checks[$0] ?? "")" }.joined(separator: "; ")
            return GateResult(
                passed: false, lines: [GateReport(status: .waiting, message: line + via)],
                failure: "ceph state is \(health)\(detail.isEmpty ? "" : " (\(detail))")")
        }
    }
}
