import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Synchronization
import Testing

/// End-to-end rollouts against what a real k3s cluster does that a kind fake would not: a Node that still
/// says Ready after a quick reboot. (The simulation models the node lifecycle controller: see
/// `SimulatedCluster.Options.nodeMonitorGracePeriod`.)
extension E2E {
@Suite("E2E: real-cluster behaviour (simulation)", .timeLimit(.minutes(2)))
struct E2ERealClusterTests {
    @Test("stale Ready after a quick reboot: nk3 uncordons only once the kubelet of the new boot reported")
    func staleReadyAfterQuickReboot() async throws {
        // At 100x: each reboot takes 1 simulated s (10 ms), the kubelet of the new boot needs 150 simulated s
        // (1.5 s) to report, and the node controller's grace period (400 s, 4 s) never runs out first — so for
        // 1.5 s after each agent is back the Node says Ready=True with its old boot id.
        try await E2ECluster.with(speed: .factor(100), configure: { o in
            o.timings.rebootDowntime = 1
            o.timings.kubeletReadyAfterBoot = 150
            o.nodeMonitorGracePeriod = 400
        }) { c in
            let sink = E2ESink()
            let early = Mutex<[String]>([])
            let sim = c.sim
            sink.onEvent { e in
                guard e.message.hasSuffix(" uncordoned") || e.message.hasPrefix("kubelet is ready on "), let node = e.node,
                    let m = try? sim.member(node)
                else { return }
                if !m.node.snapshot.kubeletReady { early.withLock { $0.append("\(e.message) (kubelet not ready)") } }
                let api = sim.kube.state.node(node)?.status?.nodeInfo?.bootID
                if api != m.node.snapshot.bootID { early.withLock { $0.append("\(e.message) (API boot id \(api ?? "-"))") } }
            }
            let summary = try await c.rollout(.reboot, sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            #expect(early.withLock { $0 }.isEmpty, "Ready/uncordon before the new boot's kubelet reported:\n\(sink.transcript)")
            #expect(sink.messages.contains { $0.hasPrefix("sim-node-1 shows Ready from before its reboot") }, "\(sink.transcript)")
            #expect(c.cordoned().isEmpty)
        }
    }
}
}

extension E2E.E2ERealClusterTests {
    @Test("a person's cordon is kept: the node is skipped with a line, and still cordoned (not by nk3) afterwards")
    func personCordonKept() async throws {
        try await E2ECluster.with { c in
            let before = try await c.statuses()
            // `kubectl cordon sim-node-2`: spec.unschedulable, no nk3 annotation.
            c.sim.kube.state.update(.nodes, name: "sim-node-2", as: Node.self) { $0.spec?.unschedulable = true }
            try c.editTemplate()
            let sink = E2ESink()
            let summary = try await c.rollout(.apply(.boot), sink: sink)
            #expect(summary.updated == ["sim-node-1", "sim-node-3"], "\(sink.transcript)")
            #expect(summary.skippedCordoned == ["sim-node-2"])
            #expect(c.cordoned() == ["sim-node-2"])
            #expect(c.cordonedByNK3().isEmpty)
            let after = try await c.statuses()
            #expect(after["sim-node-2"]?.bootID == before["sim-node-2"]?.bootID, "not rebooted")
            #expect(after["sim-node-2"]?.configHash == before["sim-node-2"]?.configHash, "nothing shipped")
            #expect(sink.messages.contains { $0.hasPrefix("Skipped 1 node(s) cordoned by someone else: sim-node-2") })
        }
    }
}

extension E2E.E2ERealClusterTests {
    @Test("a PDB-blocked drain is found by the preflight: exit 2, nothing touched, the pod and the budget named")
    func preflightFindsABlockedDrain() async throws {
        try await E2ECluster.with { c in
            try c.editTemplate()
            try await c.sim.inject(.pdbBlocksEviction, on: "sim-node-2")
            let before = try await c.statuses()
            let sink = E2ESink()
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.kind == .invalidInput && failure.exitCode == 2)
            #expect(failure.message.contains("nothing was changed"), "\(failure.message)")
            #expect(
                failure.message.contains(
                    "sim-node-2: default/pinned-sim-node-2-0: PodDisruptionBudget default/pinned-sim-node-2 wants all 1 of its pods healthy"),
                "\(failure.message)")
            #expect(c.cordoned().isEmpty)
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.bootID == before[n]?.bootID, "\(n) not rebooted")
                #expect(after[n]?.configHash == before[n]?.configHash, "\(n): nothing shipped")
                #expect(after[n]?.lastAcceptedSerial == before[n]?.lastAcceptedSerial, "\(n): no envelope sent")
            }
            #expect(!sink.messages.contains { $0.hasPrefix("Rebuilding NixOS on") })
            #expect(c.lease()?.spec.holderIdentity == nil)
        }
    }
}

extension E2E.E2ERealClusterTests {
    @Test("a budget that allows no disruption now is found only by the API's dry-run eviction: exit 2, nothing touched")
    func preflightDryRunFindsAHeldDrain() async throws {
        try await E2ECluster.with(timeouts: ["drain": 30]) { c in
            try c.editTemplate()
            // minAvailable 1 over a Ready pod on sim-node-2 and an unready one elsewhere: desiredHealthy 1 < expectedPods 2,
            // so nk3's own rules pass it (waiting could help), but disruptionsAllowed is 0 and the API refuses the eviction.
            try await c.sim.inject(.pdbHoldsEviction, on: "sim-node-2")
            let budgets = try #require(c.sim.kube.state.podDisruptionBudget(name: "held-sim-node-2")?.status)
            #expect(budgets.desiredHealthy < budgets.expectedPods && budgets.disruptionsAllowed == 0)
            let before = try await c.statuses()
            let evictionsBefore = c.sim.kube.state.stats.evictions
            let sink = E2ESink()
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.kind == .invalidInput && failure.exitCode == 2, "\(failure.message)")
            #expect(failure.message.contains("nothing was changed"), "\(failure.message)")
            #expect(
                failure.message.contains(
                    "sim-node-2: default/held-sim-node-2-0: the API server refuses its eviction (dry-run eviction): "
                        + "PodDisruptionBudget default/held-sim-node-2 allows no disruption now (HTTP 429: The disruption "
                        + "budget held-sim-node-2 needs 1 healthy pods and has 1 currently)"),
                "\(failure.message)")
            #expect(failure.message.contains("rerun once the budget's pods are healthy again"), "\(failure.message)")
            #expect(c.cordoned().isEmpty, "no cordon")
            #expect(c.sim.kube.state.stats.evictions == evictionsBefore, "no pod evicted")
            #expect(c.sim.kube.state.pod(name: "held-sim-node-2-0") != nil)
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.bootID == before[n]?.bootID, "\(n) not rebooted")
                #expect(after[n]?.configHash == before[n]?.configHash, "\(n): nothing shipped")
                #expect(after[n]?.lastAcceptedSerial == before[n]?.lastAcceptedSerial, "\(n): no envelope sent")
            }
            #expect(!sink.messages.contains { $0.hasPrefix("Rebuilding NixOS on") || $0.hasPrefix("Draining") })
            #expect(c.lease()?.spec.holderIdentity == nil)

            // The same cluster once the budget's other pod is Ready: the dry run lets it through and the rollout runs.
            try await c.sim.clear(.pdbHoldsEviction, on: "sim-node-2")
            let summary = try await c.rollout(.apply(.boot), sink: E2ESink())
            #expect(summary.updated == c.names)
        }
    }
}
