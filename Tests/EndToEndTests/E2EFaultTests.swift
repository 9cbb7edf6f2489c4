import Foundation
import NK3Agent
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NK3Simulation
import Testing

/// End-to-end rollouts with a fault injected into one node: the rollout stops with the right exit code and
/// a message naming the node and the phase, and the cluster is left in the state docs/RELIABILITY.md promises.
extension E2E {
@Suite("E2E: node faults (simulation)", .timeLimit(.minutes(2)))
struct E2EFaultTests {
    @Test("a Nix evaluation error on node 2 aborts with exit 4: node 1 committed, node 2 reverted byte for byte, node 3 untouched")
    func evaluationErrorAborts() async throws {
        try await E2ECluster.with { c in
            let before = try await c.statuses()
            var oldFiles: [String: [String: String]] = [:]
            for n in c.names { oldFiles[n] = try await c.files(on: n) }
            try c.editTemplate()
            let rendered = try c.rendered()
            try await c.sim.inject(.rebuildEvaluationError, on: "sim-node-2")

            let sink = E2ESink()
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.kind == .rebuildFailed)
            #expect(failure.exitCode == 4)
            #expect(failure.node == "sim-node-2")
            #expect(failure.step == .rebuild)
            #expect(failure.message.contains("sim-node-2"))
            #expect(failure.message.contains("rebuild"))
            #expect(failure.message.contains("undefined variable 'foo'"), "the Nix error reaches the operator: \(failure.message)")
            #expect(sink.events.last?.status == .failed)

            let after = try await c.statuses()
            // Node 1: done.
            #expect(try await c.files(on: "sim-node-1") == rendered["sim-node-1"])
            #expect(after["sim-node-1"]?.lastResult?.outcome == .committed)
            #expect(after["sim-node-1"]?.bootedGeneration == 2)
            // Node 2: reverted — old files byte for byte, old generation everywhere, never drained.
            #expect(try await c.files(on: "sim-node-2") == oldFiles["sim-node-2"])
            let s2 = try #require(after["sim-node-2"])
            #expect(s2.configHash == before["sim-node-2"]?.configHash)
            #expect(s2.lastResult?.outcome == .failed)
            #expect(s2.operation == nil)
            #expect(s2.currentGeneration == 1)
            #expect(s2.profileGeneration == 1)
            #expect(s2.bootID == before["sim-node-2"]?.bootID)
            #expect(!sink.messages.contains("Draining sim-node-2"))
            // Node 3: untouched, not even sent an envelope.
            #expect(try await c.files(on: "sim-node-3") == oldFiles["sim-node-3"])
            #expect(after["sim-node-3"]?.lastAcceptedSerial == before["sim-node-3"]?.lastAcceptedSerial)
            #expect(after["sim-node-3"]?.profileGeneration == 1)
            #expect(!sink.messages.contains("Rebuilding NixOS on sim-node-3"))
            #expect(c.cordoned().isEmpty)
            #expect(c.lease()?.spec.holderIdentity == nil, "the lease is released after a failure")
        }
    }

    @Test("kubelet never Ready after the reboot: exit 5 naming node and phase, node left cordoned and unconfirmed; its agent rolls back by itself at the confirm deadline")
    func kubeletNeverReady() async throws {
        let clock = E2EJumpClock()
        try await E2ECluster.with(timeouts: ["ready": 3], agentClock: clock) { c in
            let before = try await c.statuses()
            let oldFiles = try await c.files(on: "sim-node-2")
            try c.editTemplate()
            try await c.sim.inject(.kubeletNeverReady, on: "sim-node-2")

            let sink = E2ESink()
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.kind == .timeout)
            #expect(failure.exitCode == 5)
            #expect(failure.node == "sim-node-2")
            #expect(failure.step == .waitReady)
            #expect(failure.message.contains("sim-node-2"))
            #expect(failure.message.contains("kubelet did not become Ready"), "\(failure.message)")
            #expect(failure.message.contains("stays cordoned"))
            #expect(failure.message.contains("rolls back"))

            #expect(c.cordonedByNK3() == ["sim-node-2"], "left cordoned by nk3, with nk3's record of why")
            let s2 = try await c.sim.agentClient(for: "sim-node-2").status()
            let op = try #require(s2.operation, "the apply is still open (not confirmed)")
            #expect(op.phase == .awaitingConfirm)
            #expect(s2.bootedGeneration == 2, "it runs the new generation, unconfirmed")
            #expect(s2.lastResult?.outcome != .committed)
            let deadline = try #require(op.deadline)
            let bootBeforeRollback = s2.bootID
            #expect(try await c.sim.agentClient(for: "sim-node-1").status().lastResult?.outcome == .committed)
            #expect(try await c.sim.agentClient(for: "sim-node-3").status().lastAcceptedSerial
                == before["sim-node-3"]?.lastAcceptedSerial)

            // No coordinator any more: the agent's own deadline passes.
            clock.jump(to: deadline.addingTimeInterval(1))
            var last: AgentStatus?
            let rolledBack = await eventually {
                last = try? await c.sim.agentClient(for: "sim-node-2").status()
                // (Answered by the new boot: the old process may answer "rolled back" on its way down.)
                return last?.lastResult?.outcome == .rolledBack && last?.isBootIDKnown == true
                    && last?.bootID != bootBeforeRollback && last?.operation == nil && last?.bootedGeneration == 1
            }
            #expect(rolledBack, "agent status: \(String(describing: last))")
            #expect(last?.lastResult?.serial == op.serial)
            #expect(last?.profileGeneration == 1, "the previous generation is the boot default again")
            #expect(last?.bootedGeneration == 1, "and it rebooted into it")
            #expect(try await c.files(on: "sim-node-2") == oldFiles, "old files restored byte for byte")
            #expect(last?.configHash == before["sim-node-2"]?.configHash)
        }
    }

    @Test("a PDB that never allows eviction: the drain is refused (exit 8, not a timeout) naming default/pinned-sim-node-2; the node stays cordoned by nk3; a rerun after clearing it completes with nothing cordoned")
    func pdbBlocksDrain() async throws {
        try await E2ECluster.with(timeouts: ["drain": 3]) { c in
            try c.editTemplate()
            let rendered = try c.rendered()
            try await c.sim.inject(.pdbBlocksEviction, on: "sim-node-2")

            let sink = E2ESink()
            // Past the preflight (which would refuse at the start: see E2ERealClusterTests), to the drain itself.
            let failure = try #require(try await c.failingRollout(.apply(.boot), skipDrainPreflight: true, sink: sink))
            #expect(failure.kind == .drainRefused)
            #expect(failure.exitCode == 8)
            #expect(failure.node == "sim-node-2")
            #expect(failure.step == .drain)
            #expect(failure.message.contains("default/pinned-sim-node-2"), "names the PDB: \(failure.message)")
            #expect(failure.message.contains("stays cordoned"))
            #expect(c.cordonedByNK3() == ["sim-node-2"])
            #expect(c.cordoned() == ["sim-node-2"])
            let s2 = try await c.sim.agentClient(for: "sim-node-2").status()
            #expect(s2.operation?.phase == .awaitingConfirm, "rebuilt for the next boot, not rebooted, not confirmed")
            #expect(!sink.messages.contains("Rebooting sim-node-2"))
            #expect(c.lease()?.spec.holderIdentity == nil)

            try await c.sim.clear(.pdbBlocksEviction, on: "sim-node-2")
            let rerun = E2ESink()
            let summary = try await c.rollout(.apply(.boot), holder: "e2e@test/rerun", sink: rerun)
            #expect(Set(summary.updated + summary.alreadyDone + summary.unchanged) == Set(c.names), "\(rerun.transcript)")
            #expect(summary.updated.contains("sim-node-2"))
            #expect(summary.updated.contains("sim-node-3"))
            #expect(!summary.updated.contains("sim-node-1"), "node 1 was finished by the first run")
            #expect(rerun.inOrder(["Draining sim-node-2", "Rebooting sim-node-2", "sim-node-2 uncordoned"]), "\(rerun.transcript)")
            #expect(c.cordoned().isEmpty)
            #expect(c.cordonedByNK3().isEmpty)
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.lastResult?.outcome == .committed, "\(n)")
                #expect(try await c.files(on: n) == rendered[n])
                #expect(after[n]?.bootedGeneration == 2)
            }
        }
    }

    @Test("an agent unreachable before the start: clear refusal (exit 3) naming it; no envelope accepted anywhere, nothing cordoned")
    func unreachableBeforeStart() async throws {
        try await E2ECluster.with { c in
            let before = try await c.statuses()
            try c.editTemplate()
            try await c.sim.inject(.agentUnreachable, on: "sim-node-2")

            let sink = E2ESink()
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.kind == .unreachable)
            #expect(failure.exitCode == 3)
            #expect(failure.message.contains("sim-node-2"))
            #expect(failure.message.contains("nothing was changed"), "\(failure.message)")
            #expect(!failure.message.contains("sim-node-1 ("), "only the unreachable node is named")
            #expect(sink.messages.contains { $0.hasPrefix("sim-node-2 is unreachable") })
            #expect(!sink.messages.contains { $0.hasPrefix("Rebuilding") || $0.hasPrefix("Draining") })
            for n in ["sim-node-1", "sim-node-3"] {
                let s = try await c.sim.agentClient(for: n).status()
                #expect(s.lastAcceptedSerial == before[n]?.lastAcceptedSerial, "\(n) accepted no envelope")
                #expect(s.configHash == before[n]?.configHash)
                #expect(s.operation == nil)
            }
            #expect(c.cordoned().isEmpty)
            #expect(c.lease() == nil, "refused before even taking the lease")

            // Back again: the same rollout goes through.
            try await c.sim.clear(.agentUnreachable, on: "sim-node-2")
            let s2 = try await c.sim.agentClient(for: "sim-node-2").status()
            #expect(s2.lastAcceptedSerial == before["sim-node-2"]?.lastAcceptedSerial)
            let summary = try await c.rollout(.apply(.boot), sink: E2ESink())
            #expect(summary.updated == c.names)
        }
    }
}
}
