import Foundation
import NK3Coordinator
import NK3Kube
import Testing

/// The pure gate rules on real-shaped JSON (GateFixtures).
@Suite("Health gate rules on API JSON")
struct GateLogicTests {
    @Test("kubelet gate: Ready/KubeletReady passes; KubeletNotReady and NodeStatusUnknown fail (docs/UPSTREAM.md#nodes)")
    func kubeletReady() throws {
        let nodes = try GateFixtures.decode(GateFixtures.nodeList, as: KubeList<Node>.self).items
        #expect(nodes.count == 3)
        let all = GateLogic.kubeletReady(nodes: nodes)
        #expect(!all.passed)
        #expect(all.lines.map(\.message).first == "kubelet is ready on n1")
        #expect(all.lines[0].status == .ok && all.lines[0].node == "n1")
        #expect(all.lines[1].status == .waiting && all.lines[1].message.hasPrefix("kubelet is not ready on n2 (False/KubeletNotReady"))
        #expect(all.lines[2].message.hasPrefix("kubelet is not ready on n3 (Unknown/NodeStatusUnknown"))
        #expect(all.failure?.contains("n2") == true && all.failure?.contains("n3") == true)
        #expect(all.failure?.contains("n1") == false)

        let onlyReady = GateLogic.kubeletReady(nodes: [nodes[0]])
        #expect(onlyReady.passed)
        #expect(onlyReady.lines.map(\.message) == ["kubelet is ready on n1"])
        #expect(!GateLogic.kubeletReady(nodes: []).passed)
    }

    @Test("Ready=True with a reason other than KubeletReady does not pass")
    func readyNeedsKubeletReason() throws {
        var node = try GateFixtures.decode(GateFixtures.nodeList, as: KubeList<Node>.self).items[0]
        node.status?.conditions = [KubeCondition(type: "Ready", status: "True", reason: "SomethingElse")]
        #expect(!GateLogic.kubeletReady(nodes: [node]).passed)
    }

    @Test("node JSON decodes unschedulable, taints and nodeInfo, ignoring unknown fields")
    func nodeDecoding() throws {
        let nodes = try GateFixtures.decode(GateFixtures.nodeList, as: KubeList<Node>.self).items
        #expect(!nodes[0].isUnschedulable)  // omitempty: absent means false
        #expect(nodes[1].isUnschedulable)
        #expect(nodes[1].spec?.taints?.first?.key == "node.kubernetes.io/unschedulable")
        #expect(nodes[0].bootID == "b1" && nodes[1].kernelVersion == "6.6.31")
    }

    @Test("daemonset gate: a rollout whose generation is not yet observed, and a pod unavailable, are recovering (docs/UPSTREAM.md#rollout-status)")
    func daemonSetsRollingOut() throws {
        let list = try GateFixtures.decode(GateFixtures.daemonSetList, as: KubeList<DaemonSet>.self).items
        let r = GateLogic.daemonSets(list, namespace: "kube-system")
        #expect(!r.passed)
        #expect(r.lines.map(\.message) == ["2 daemonsets recovering in namespace kube-system"])
        #expect(r.lines[0].status == .waiting)
        #expect(r.failure?.contains("node-exporter: spec generation 4 not yet observed") == true)
        #expect(r.failure?.contains("csi-rbdplugin: 2/3 available") == true)
        #expect(GateLogic.daemonSetProblem(list[0]) == nil)

        let settled = GateLogic.daemonSets([list[0]], namespace: "kube-system")
        #expect(settled.passed)
        #expect(settled.lines.map(\.message) == ["1 daemonsets healthy in namespace kube-system"])
    }

    @Test("a DaemonSet wanting no pods (omitempty counters absent) is healthy")
    func emptyDaemonSet() throws {
        let ds = try GateFixtures.decode(GateFixtures.emptyDaemonSet, as: DaemonSet.self)
        #expect(ds.status?.numberAvailable == 0)
        #expect(GateLogic.daemonSetProblem(ds) == nil)
        #expect(GateLogic.daemonSets([], namespace: "x").lines.map(\.message) == ["0 daemonsets healthy in namespace x"])
    }

    @Test("deployment gate: below minimum replicas (Available False/MinimumReplicasUnavailable) is recovering")
    func deploymentBelowMinimum() throws {
        let list = try GateFixtures.decode(GateFixtures.deploymentList, as: KubeList<Deployment>.self).items
        let r = GateLogic.deployments(list, namespace: "default")
        #expect(!r.passed)
        #expect(r.lines.map(\.message) == ["1 deployments recovering in namespace default"])
        #expect(r.failure?.contains("web: Available=False/MinimumReplicasUnavailable (1/3 replicas available)") == true)
        let ok = GateLogic.deployments([list[0]], namespace: "default")
        #expect(ok.passed)
        #expect(ok.lines.map(\.message) == ["1 deployments healthy in namespace default"])
        var noCondition = list[0]
        noCondition.status?.conditions = nil
        #expect(GateLogic.deploymentProblem(noCondition) != nil)
    }

    static let cameBack = KubeTime.parse("2024-05-01T12:05:00Z")!

    func ceph(_ health: String, _ details: [String: (String, String)] = [:], checked: String = "2024-05-01T12:06:00Z") throws
        -> GateResult
    {
        let cluster = try GateFixtures.decode(
            GateFixtures.cephCluster(health: health, details: details, lastChecked: checked), as: CephCluster.self)
        return GateLogic.ceph(cluster, checkedAfter: Self.cameBack)
    }

    @Test("ceph HEALTH_OK checked after the node came back passes (docs/UPSTREAM.md#rook-cephcluster)")
    func cephOK() throws {
        let r = try ceph("HEALTH_OK")
        #expect(r.passed)
        #expect(r.lines.map(\.message) == ["ceph state is HEALTH_OK"])
        #expect(r.lines[0].status == .ok)
    }

    @Test("ceph HEALTH_WARN with only MON_CLOCK_SKEW passes, reported as a warning")
    func cephWarnTolerated() throws {
        let r = try ceph("HEALTH_WARN", ["MON_CLOCK_SKEW": ("HEALTH_WARN", "clock skew detected on mon.b")])
        #expect(r.passed)
        #expect(r.lines[0].status == .warning)
        #expect(r.lines[0].message == "ceph state is HEALTH_WARN (tolerated: MON_CLOCK_SKEW)")
        let crash = try ceph("HEALTH_WARN", ["RECENT_CRASH": ("HEALTH_WARN", "1 daemons have recently crashed")])
        #expect(crash.passed)
    }

    @Test("ceph HEALTH_WARN with a tolerated check plus another fails and names both")
    func cephWarnTwoChecks() throws {
        let r = try ceph(
            "HEALTH_WARN",
            ["MON_CLOCK_SKEW": ("HEALTH_WARN", "clock skew detected on mon.b"), "OSDMAP_FLAGS": ("HEALTH_WARN", "noout flag(s) set")])
        #expect(!r.passed)
        #expect(r.lines.map(\.message) == ["ceph state is HEALTH_WARN"])
        #expect(r.lines[0].status == .waiting)
        #expect(r.failure?.contains("OSDMAP_FLAGS: noout flag(s) set") == true)
        #expect(r.failure?.contains("MON_CLOCK_SKEW") == true)
    }

    @Test("ceph HEALTH_WARN with two checks fails even if both are tolerable alone (README.md: a lone warning); no details fails")
    func cephWarnEdges() throws {
        let both = try ceph(
            "HEALTH_WARN", ["MON_CLOCK_SKEW": ("HEALTH_WARN", "skew"), "RECENT_CRASH": ("HEALTH_WARN", "crash")])
        #expect(!both.passed)
        #expect(!(try ceph("HEALTH_WARN")).passed)
    }

    @Test("ceph HEALTH_ERR fails")
    func cephErr() throws {
        let r = try ceph("HEALTH_ERR", ["OSD_DOWN": ("HEALTH_ERR", "1 osds down")])
        #expect(!r.passed)
        #expect(r.lines.map(\.message) == ["ceph state is HEALTH_ERR"])
        #expect(r.failure == "ceph state is HEALTH_ERR (OSD_DOWN: 1 osds down)")
    }

    @Test("a stale HEALTH_OK (checked before the node came back) does not pass; one stamped in its second does")
    func cephStaleOK() throws {
        let stale = try ceph("HEALTH_OK", checked: "2024-05-01T12:04:59Z")
        #expect(!stale.passed)
        #expect(stale.failure?.contains("last checked at 2024-05-01T12:04:59Z") == true)
        #expect(stale.lines[0].status == .waiting)
        // Rook stamps whole seconds: a check in the same second as the return may have run after it.
        #expect(try ceph("HEALTH_OK", checked: "2024-05-01T12:05:00Z").passed)
        let cluster0 = try GateFixtures.decode(
            GateFixtures.cephCluster(health: "HEALTH_OK", lastChecked: "2024-05-01T12:05:00Z"), as: CephCluster.self)
        #expect(GateLogic.ceph(cluster0, checkedAfter: Self.cameBack.addingTimeInterval(0.7)).passed)
        #expect(!GateLogic.ceph(cluster0, checkedAfter: Self.cameBack.addingTimeInterval(1)).passed)
        // A stamp with a fraction is compared exactly.
        let precise = try GateFixtures.decode(
            GateFixtures.cephCluster(health: "HEALTH_OK", lastChecked: "2024-05-01T12:05:00.500Z"), as: CephCluster.self)
        #expect(!GateLogic.ceph(precise, checkedAfter: Self.cameBack.addingTimeInterval(0.7)).passed)
        #expect(try ceph("HEALTH_OK", checked: "2024-05-01T12:05:01Z").passed)
        // Without a 'since' (the gate before the rollout starts) any fresh-enough report counts.
        let cluster = try GateFixtures.decode(
            GateFixtures.cephCluster(health: "HEALTH_OK", lastChecked: "2024-05-01T12:04:59Z"), as: CephCluster.self)
        #expect(GateLogic.ceph(cluster, checkedAfter: nil).passed)
    }

    @Test("a CephCluster without status.ceph is unknown, not healthy")
    func cephNoStatus() {
        let cluster = CephCluster(metadata: ObjectMeta(name: "rook-ceph", namespace: "rook-ceph"))
        let r = GateLogic.ceph(cluster, checkedAfter: nil)
        #expect(!r.passed)
        #expect(r.lines.map(\.message) == ["ceph state is unknown"])
    }
}
