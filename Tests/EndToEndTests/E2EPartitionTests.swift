import Foundation
import NK3Agent
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NK3Simulation
import Synchronization
import Testing

/// Issue 9.3: partitions. The network between the coordinator and one agent cut in the confirm window; the
/// Kubernetes API failing for a while, and for good.
extension E2E {
@Suite("E2E: partitions (simulation)", .timeLimit(.minutes(2)))
struct E2EPartitionTests {
    @Test("the link to node 2's agent cut after its reboot, before the confirm: the coordinator aborts clearly (exit 3); the agent rolls back by itself at its deadline; healed, a rerun converges")
    func agentLinkCutInConfirmWindow() async throws {
        let clock = E2EJumpClock()
        try await E2ECluster.with(agentClock: clock) { c in
            let proxy = try E2EProxy(targetPort: try c.sim.member("sim-node-2").port)
            defer { proxy.stop() }
            try c.redirectAgent(of: "sim-node-2", toPort: proxy.port)
            let before = try await c.statuses()
            let oldFiles = try await c.files(on: "sim-node-2")
            try c.editTemplate()
            let rendered = try c.rendered()

            let sink = E2ESink()
            let cutDone = E2ELatch()
            sink.onEvent { e in
                // After the reboot, the kubelet Ready and the uncordon, before the gates and the confirm.
                if e.message == "sim-node-2 uncordoned" {
                    proxy.cut()
                    cutDone.open()
                }
            }
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(cutDone.isOpen, "\(sink.transcript)")
            #expect(proxy.connections > 0, "the coordinator went through the proxy")
            #expect(failure.kind == .unreachable, "\(failure)")
            #expect(failure.exitCode == 3)
            #expect(failure.node == "sim-node-2")
            #expect(failure.step == .confirm)
            #expect(failure.message.contains("sim-node-2"))
            #expect(failure.message.contains("confirm"))
            #expect(failure.message.contains("rolls back to the previous generation by itself"), "\(failure.message)")
            #expect(c.cordoned().isEmpty, "it was uncordoned before the link went")

            // The agent (seen directly, not through the cut link) waits for a confirm that never comes.
            let s2 = try await c.sim.agentClient(for: "sim-node-2").status()
            let op = try #require(s2.operation)
            #expect(op.phase == .awaitingConfirm)
            #expect(s2.bootedGeneration == 2)
            let deadline = try #require(op.deadline)
            #expect(deadline.timeIntervalSince(clock.now()) > 60, "a confirm deadline from the inventory (120 s)")
            #expect(try await c.sim.agentClient(for: "sim-node-3").status().lastAcceptedSerial
                == before["sim-node-3"]?.lastAcceptedSerial, "node 3 untouched")

            clock.jump(to: deadline.addingTimeInterval(1))
            var last: AgentStatus?
            let rolledBack = await eventually {
                last = try? await c.sim.agentClient(for: "sim-node-2").status()
                return last?.lastResult?.outcome == .rolledBack && last?.operation == nil && last?.bootedGeneration == 1
            }
            #expect(rolledBack, "\(String(describing: last))")
            #expect(last?.lastResult?.serial == op.serial)
            #expect(last?.profileGeneration == 1)
            #expect(try await c.files(on: "sim-node-2") == oldFiles)

            // The network heals: the same rollout converges.
            proxy.heal()
            let rerun = E2ESink()
            let summary = try await c.rollout(.apply(.boot), holder: "e2e@test/rerun", sink: rerun)
            #expect(summary.updated.contains("sim-node-2"), "\(rerun.transcript)")
            #expect(summary.updated.contains("sim-node-3"))
            let after = try await c.statuses()
            for n in c.names {
                #expect(after[n]?.lastResult?.outcome == .committed, "\(n)")
                #expect(try await c.files(on: n) == rendered[n])
            }
            #expect(c.cordoned().isEmpty)
        }
    }

    @Test("the Kubernetes API answers 500s and 429s (also plain-text 429 with Retry-After) for a while: the rollout rides them out and succeeds")
    func apiFaultsForAWhile() async throws {
        try await E2ECluster.with { c in
            try c.editTemplate()
            let state = c.sim.kube.state
            // Before anything: the lease and progress requests.
            state.injectFaults(.internalError, count: 2)
            state.injectFaults(.tooManyRequestsPlainText(retryAfterSeconds: 1), count: 1)
            let sink = E2ESink()
            let injected = Mutex(Set<String>())
            sink.onEvent { e in
                let key = e.message
                let first = injected.withLock { $0.insert(key).inserted }
                guard first else { return }
                switch key {
                case "Draining sim-node-1":  // cordon and evictions
                    state.injectFaults(.internalError, count: 2)
                    state.injectFaults(.tooManyRequests, count: 2)
                case "Rebooting sim-node-2":
                    // More than one request's retries (5 attempts): an API server restarting, as when the k3s
                    // server the kubeconfig names is the node being rebooted. Progress saves, the Ready wait
                    // and the uncordon meet it.
                    state.injectFaults(.serviceUnavailable, count: 4)
                    state.injectFaults(.internalError, count: 4)
                    state.injectFaults(.tooManyRequestsPlainText(retryAfterSeconds: 1), count: 2)
                case "sim-node-3 uncordoned":  // the gates
                    state.injectFaults(.internalError, count: 3)
                default: break
                }
            }
            let summary: RolloutSummary
            do {
                summary = try await c.rollout(.apply(.boot), sink: sink)
            } catch {
                Issue.record("transient API errors aborted the rollout: \(error)\n\(sink.transcript)")
                return
            }
            #expect(summary.updated == c.names)
            #expect(state.stats.faultsServed >= 20, "the faults were served: \(state.stats)")
            #expect(c.cordoned().isEmpty)
            let after = try await c.statuses()
            for n in c.names { #expect(after[n]?.lastResult?.outcome == .committed) }
            #expect(c.lease()?.spec.holderIdentity == nil)
        }
    }

    @Test("the Kubernetes API fails for good after node 1's reboot: a clear timeout (exit 5) naming the node, the wait and the API error; node 1 left cordoned and unconfirmed")
    func apiFaultsForever() async throws {
        try await E2ECluster.with(timeouts: ["ready": 3]) { c in
            try c.editTemplate()
            let state = c.sim.kube.state
            let sink = E2ESink()
            let rebooting = Mutex(false)
            sink.onEvent { e in
                if e.message == "Rebooting sim-node-1" { rebooting.withLock { $0 = true } }
                if e.message == "sim-node-1 is reachable", rebooting.withLock({ $0 }) {
                    // The node's own API path (its Ready condition, its uncordon): progress saves still work.
                    state.injectFaults(.internalError, count: 1_000_000, pathPrefix: "/api/v1/nodes/sim-node-1")
                }
            }
            let failure = try #require(try await c.failingRollout(.apply(.boot), sink: sink))
            #expect(failure.exitCode == 5, "\(failure)")
            #expect(failure.node == "sim-node-1")
            #expect(failure.step == .waitReady)
            #expect(failure.message.contains("kubelet did not become Ready within 3s"), "\(failure.message)")
            #expect(failure.message.contains("500") || failure.message.contains("Internal error"),
                    "the operator learns the API was failing, not the kubelet: \(failure.message)")
            #expect(c.cordonedByNK3() == ["sim-node-1"])
            let s1 = try await c.sim.agentClient(for: "sim-node-1").status()
            #expect(s1.operation?.phase == .awaitingConfirm, "not confirmed: its agent rolls back at the deadline")
        }
    }
}
}
