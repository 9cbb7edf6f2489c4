import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Testing

/// The Ceph gate asks Ceph itself (`ceph status -f json` in Rook's toolbox) when the toolbox runs, and falls back to
/// the CephCluster status otherwise; each line names the source.
extension GateWaitTests {
    static let toolboxPod = "rook-ceph-tools-5b6c7d-abcde"

    func addToolbox(_ state: FakeKubeState, ready: Bool = true) {
        state.addNode("n1")
        state.addPod(
            namespace: "rook-ceph", name: Self.toolboxPod, node: "n1", labels: ["app": "rook-ceph-tools"],
            owner: ("ReplicaSet", "rook-ceph-tools-5b6c7d"), ready: ready)
    }

    @Test("with a running toolbox the gate passes on Ceph's own answer at once, though Rook's copy is stale")
    func cephViaToolbox() async throws {
        try await withCluster { server, client in
            let cameBack = Date()
            // Rook's last check ran before the node came back: the CephCluster path would wait for the next one.
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(-30))
            server.state.setCephHealthAsCephSees(health: "HEALTH_OK")
            addToolbox(server.state)
            let result = try await HealthGates.ceph(client, checkedAfter: cameBack).check()
            #expect(result.passed)
            #expect(result.lines.map(\.message) == ["ceph state is HEALTH_OK via ceph status in rook-ceph/\(Self.toolboxPod)"])
        }
    }

    @Test("the toolbox's HEALTH_WARN fails the gate with Ceph's checks; a lone tolerated check passes as a warning")
    func toolboxWarn() async throws {
        try await withCluster { server, client in
            addToolbox(server.state)
            server.state.setCephHealthAsCephSees(
                health: "HEALTH_WARN", details: ["OSD_DOWN": CephHealthMessage(severity: "HEALTH_WARN", message: "1 osds down")])
            let warn = try await HealthGates.ceph(client, checkedAfter: Date()).check()
            #expect(!warn.passed)
            #expect(warn.failure == "ceph state is HEALTH_WARN (OSD_DOWN: 1 osds down)")
            server.state.setCephHealthAsCephSees(
                health: "HEALTH_WARN", details: ["MON_CLOCK_SKEW": CephHealthMessage(severity: "HEALTH_WARN", message: "clock skew")])
            let tolerated = try await HealthGates.ceph(client, checkedAfter: Date()).check()
            #expect(tolerated.passed)
            #expect(tolerated.lines.first?.status == .warning)
        }
    }

    @Test("without a Ready toolbox the gate judges by the CephCluster status and says so")
    func cephWithoutToolbox() async throws {
        try await withCluster { server, client in
            let cameBack = Date()
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(-30))
            server.state.setCephHealthAsCephSees(health: "HEALTH_OK")
            addToolbox(server.state, ready: false)  // not Ready: not asked
            let result = try await HealthGates.ceph(client, checkedAfter: cameBack).check()
            #expect(!result.passed)
            #expect(result.lines.first?.message.hasSuffix("via CephCluster rook-ceph/rook-ceph") == true, "\(result.lines)")
            #expect(result.lines.first?.message.contains("stale") == true)
        }
    }

    @Test("an exec the API forbids is warned about once and the gate keeps to the CephCluster status")
    func execForbiddenFallsBack() async throws {
        try await withCluster { server, client in
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: Date())
            addToolbox(server.state)
            server.state.setExecForbidden()
            let gate = HealthGates.ceph(client, checkedAfter: nil)
            let first = try await gate.check()
            #expect(first.passed)
            #expect(first.lines.count == 2)
            #expect(first.lines.first?.status == .warning)
            #expect(first.lines.first?.message.contains("cannot run ceph status in rook-ceph/\(Self.toolboxPod)") == true)
            #expect(first.lines.first?.message.contains("forbidden") == true, "\(first.lines)")
            #expect(first.lines.last?.message == "ceph state is HEALTH_OK via CephCluster rook-ceph/rook-ceph")
            // Exec is not tried again (allowed now, it would answer HEALTH_WARN from Ceph's view).
            server.state.setExecForbidden(false)
            server.state.setCephHealthAsCephSees(health: "HEALTH_WARN")
            let second = try await gate.check()
            #expect(second.lines.map(\.message) == ["ceph state is HEALTH_OK via CephCluster rook-ceph/rook-ceph"])
        }
    }

    @Test("no CephCluster but a running toolbox: Ceph answers, the gate passes")
    func toolboxWithoutCephCluster() async throws {
        try await withCluster { server, client in
            addToolbox(server.state)
            server.state.setCephHealthAsCephSees(health: "HEALTH_OK")
            let result = try await HealthGates.ceph(client, checkedAfter: Date()).check()
            #expect(result.passed)
        }
    }

    @Test("without a toolbox the gate does not list pods on every poll, and a toolbox pod that went away is looked up again")
    func toolboxLookupPace() async throws {
        try await withCluster { server, client in
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: Date())
            let lists = { server.state.stats.byRoute["GET pods (list, one namespace)"] ?? 0 }
            // The lookup's pace is wall-clock time: an hour here, so that a loaded machine cannot make three checks
            // span it; a gate whose pace has passed at every check looks every time.
            let gate = HealthGates.ceph(client, checkedAfter: nil, toolboxRelook: .seconds(3600))
            for _ in 0..<3 { _ = try await gate.check() }
            #expect(lists() == 1)
            let eager = HealthGates.ceph(client, checkedAfter: nil, toolboxRelook: .zero)
            for _ in 0..<3 { _ = try await eager.check() }
            #expect(lists() == 4)

            // A toolbox found, then replaced (a drain evicted it): the gate follows to the new pod, no warning.
            let withToolbox = HealthGates.ceph(client, checkedAfter: nil, toolboxRelook: .seconds(3600))
            addToolbox(server.state)
            server.state.setCephHealthAsCephSees(health: "HEALTH_OK")
            #expect(try await withToolbox.check().lines.first?.message.contains(Self.toolboxPod) == true)
            server.state.delete(.pods, namespace: "rook-ceph", name: Self.toolboxPod)
            server.state.addPod(
                namespace: "rook-ceph", name: "rook-ceph-tools-5b6c7d-fghij", node: "n1", labels: ["app": "rook-ceph-tools"],
                owner: ("ReplicaSet", "rook-ceph-tools-5b6c7d"))
            let gone = try await withToolbox.check()
            #expect(gone.lines.map(\.status) == [.ok], "\(gone.lines)")  // judged by the CephCluster meanwhile
            let next = try await withToolbox.check()
            #expect(next.lines.map(\.message) == ["ceph state is HEALTH_OK via ceph status in rook-ceph/rook-ceph-tools-5b6c7d-fghij"])
        }
    }
}
