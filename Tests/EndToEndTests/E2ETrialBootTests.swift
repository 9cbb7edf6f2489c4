import Foundation
import NK3Agent
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

/// Trial boot end to end (docs/RELIABILITY.md#trial-boot), on the simulated cluster with a GRUB-like boot loader
/// per node (a SIMULATION: SimulatedNode+BootLoader.swift).
extension E2E {
@Suite("E2E: trial boot (simulation)", .timeLimit(.minutes(2)))
struct E2ETrialBootTests {
    @Test("a kernel that does not boot on node 2: exit 3 'the next reset boots the previous generation'; after the simulated reset node 2 runs generation 1 and reports rolled_back; a rerun stops at node 2 with exit 6; node 3 untouched")
    func kernelThatDoesNotBoot() async throws {
        try await E2ECluster.with(timeouts: ["reboot": 6], configure: { $0.bootLoader = .grub }) { c in
            let before = try await c.statuses()
            for n in c.names { #expect(before[n]?.rollbackMode == "trial-boot", "\(n)") }
            let oldFiles = try await c.files(on: "sim-node-2")
            let oldNode3 = try await c.files(on: "sim-node-3")
            try c.editTemplate()
            let rendered = try c.rendered()
            try await c.sim.inject(.kernelDoesNotBoot, on: "sim-node-2")

            let sink = E2ESink()
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.exitCode == 3, "\(failure.message)")
            #expect(failure.node == "sim-node-2")
            #expect(failure.step == .waitReachable)
            #expect(failure.message.contains("the next reset boots the previous generation"), "\(failure.message)")
            let m2 = try c.sim.member("sim-node-2")
            #expect(m2.node.snapshot.power == .down, "the new kernel never came up")
            #expect(m2.node.snapshot.failedBoots == 1)
            #expect(m2.node.snapshot.bootDefault == 1, "generation 1 stayed the boot loader's default")
            #expect(m2.node.snapshot.bootOnce == nil, "the one-shot was spent on the failed boot")

            // Node 1 went through a good trial boot and was confirmed: generation 2 is its default now.
            let s1 = try await c.sim.agentClient(for: "sim-node-1").status()
            #expect(s1.lastResult?.outcome == .committed)
            #expect(s1.bootedGeneration == 2)
            #expect(try c.sim.member("sim-node-1").node.snapshot.bootDefault == 2)
            #expect(try await c.files(on: "sim-node-1") == rendered["sim-node-1"])

            // The simulated reset (watchdog / panic=N): the boot loader boots its default, generation 1.
            try await c.sim.clear(.kernelDoesNotBoot, on: "sim-node-2")
            var last: AgentStatus?
            let back = await eventually {
                last = try? await c.sim.agentClient(for: "sim-node-2").status()
                return last?.lastResult?.outcome == .rolledBack && last?.operation == nil
            }
            #expect(back, "agent status: \(String(describing: last))")
            #expect(last?.bootedGeneration == 1)
            #expect(last?.profileGeneration == 1)
            #expect(last?.lastResult?.message.contains("trial boot failed") == true)
            #expect(try await c.files(on: "sim-node-2") == oldFiles, "old files restored byte for byte")
            #expect(m2.node.snapshot.boots == 3, "no further reboot: the old generation already runs")

            // A rerun of the same change stops at node 2 with exit 6 and says why.
            let rerun = E2ESink()
            let again = try #require(try await c.failingRollout(.apply(.boot), sink: rerun))
            #expect(again.exitCode == 6, "\(again.message)")
            #expect(again.node == "sim-node-2")
            #expect(again.message.contains("previous generation"), "\(again.message)")
            #expect(again.message.contains("trial boot failed"), "\(again.message)")
            // The node that rolled back stays cordoned: it is out of service until someone has looked at it.
            #expect(c.cordoned() == ["sim-node-2"], "\(again.message)")

            // Node 3: never touched.
            let s3 = try await c.sim.agentClient(for: "sim-node-3").status()
            #expect(s3.lastAcceptedSerial == before["sim-node-3"]?.lastAcceptedSerial)
            #expect(s3.profileGeneration == 1)
            #expect(try await c.files(on: "sim-node-3") == oldNode3)

            // How the operator brings it back (docs/RELIABILITY.md#trial-boot): revert the change and rerun. Node 2
            // already runs the old files, so nk3 recovers it (Ready, uncordon, gates); node 1 gets the old files.
            try c.restoreTemplate()
            let reverted = E2ESink()
            _ = try await c.rollout(.apply(.boot), sink: reverted)
            #expect(c.cordoned().isEmpty, "\(reverted.transcript)")
            #expect(try await c.files(on: "sim-node-2") == oldFiles)
            let revertedRender = try c.rendered()
            #expect(revertedRender["sim-node-1"] != rendered["sim-node-1"], "the revert changes node 1's files")
            #expect(try await c.files(on: "sim-node-1") == revertedRender["sim-node-1"])
        }
    }
}
}

extension E2E {
/// The confirm's receipt comes before the commit (with a trial boot: switch-to-configuration boot of the new
/// generation, `timings.activation` on the simulated node). A rollout reports a node confirmed only once its agent
/// has no apply open any more, so an upgrade started right after an apply never takes the apply's open operation
/// for its own (it did: `nk3 demo` ended "3 updated" with one node still on the old nixpkgs).
@Suite("E2E: confirm waits for the commit (simulation)", .timeLimit(.minutes(3)))
struct E2EConfirmCommitTests {
    @Test("apply, then upgrade at once: after each rollout no agent has an apply open, and the upgrade reaches every node")
    func upgradeRightAfterApply() async throws {
        try await E2ECluster.with(speed: .factor(50), configure: { o in
            o.bootLoader = .grub
            o.timings.activation = 5  // simulated seconds: 0.1 s real for the commit after the confirm
        }) { c in
            try c.editTemplate()
            let applied = E2ESink()
            let first = try await c.rollout(.apply(.boot), sink: applied)
            #expect(first.updated == c.names, "\(applied.transcript)")
            for (n, s) in try await c.statuses() {
                #expect(s.operation == nil, "\(n) still has \(String(describing: s.operation)) open after the apply")
                #expect(s.lastResult?.outcome == .committed, "\(n)")
            }
            let upgraded = E2ESink()
            let second = try await c.rollout(.upgrade(.boot), sink: upgraded)
            #expect(second.updated == c.names, "\(upgraded.transcript)")
            for (n, s) in try await c.statuses() {
                #expect(s.kernel == "6.6.46", "\(n) was upgraded\n\(upgraded.transcript)")
                #expect(s.operation == nil, "\(n)")
            }
        }
    }
}
}
