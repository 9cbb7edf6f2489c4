import Foundation
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

extension E2E {
@Suite("E2E: rerun while a node the killed run rebooted is still down (simulation)", .timeLimit(.minutes(3)))
struct E2EInterruptedRebootTests {
    @Test("the rerun waits for the node its saved progress says was rebooting, instead of refusing it as unreachable")
    func rerunWaitsForTheRebootingNode() async throws {
        try await E2ECluster.with { c in
            try c.editTemplate()
            // Node 2 goes down on its reboot and stays down until the fault is cleared.
            try await c.sim.inject(.neverReturnsAfterReboot, on: "sim-node-2")
            let first = E2ESink()
            let rebooting = E2ELatch()
            first.onEvent { e in if e.message == "Rebooting sim-node-2" { rebooting.open() } }
            let t = Task { try await c.rollout(.apply(.boot), holder: "alice@box/1", sink: first) }
            // The coordinator dies once node 2 is down (its agent stopped): it was waiting for it to return.
            #expect(await eventually { rebooting.isOpen }, "never saw node 2 rebooted:\n\(first.transcript)")
            #expect(await eventually { (try? c.sim.member("sim-node-2").agentIsRunning) == false })
            t.cancel()
            do {
                _ = try await t.value
                Issue.record("the first rollout was not interrupted:\n\(first.transcript)")
            } catch is CancellationError {}
            #expect((try? c.sim.member("sim-node-2").agentIsRunning) == false, "node 2 is down when the rerun starts")

            // The rerun: once it says it waits for node 2, node 2 powers on again.
            let rerun = E2ESink()
            let waiting = "sim-node-2 is down: the interrupted rollout was rebooting it"
            let waitingSeen = E2ELatch()
            rerun.onEvent { e in if e.message.hasPrefix(waiting) { waitingSeen.open() } }
            let r = Task { try await c.rollout(.apply(.boot), holder: "bob@laptop/2", sink: rerun) }
            #expect(await eventually { waitingSeen.isOpen }, "the rerun did not wait for node 2:\n\(rerun.transcript)")
            try await c.sim.clear(.neverReturnsAfterReboot, on: "sim-node-2")
            let summary = try await r.value
            #expect(Set(summary.updated + summary.alreadyDone + summary.unchanged) == Set(c.names), "\(summary)")
            #expect(c.cordoned().isEmpty, "no node left cordoned\n\(rerun.transcript)")
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.lastResult?.outcome == .committed, "\(n): \(String(describing: after[n]?.lastResult))")
            }
        }
    }
}
}
