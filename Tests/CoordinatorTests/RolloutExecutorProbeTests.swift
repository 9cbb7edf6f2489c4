import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// The agents are asked for their status once per rollout: a caller that has just probed them passes the
/// answers in.
@Suite struct RolloutExecutorProbeTests {
    @Test("with the caller's probe, the executor asks no agent for its status before the first node")
    func probedOnce() async throws {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        var probed: [String: AgentStatus] = [:]
        for n in ["a1", "a2"] { probed[n] = try await rig.world.status(n) }
        let before = await rig.world.calls.count
        _ = try await rig.executor().run(rig.plan(), probed: probed)
        let calls = Array(await rig.world.calls.dropFirst(before))
        let firstSubmit = try #require(calls.firstIndex(of: "submit apply a1"))
        #expect(!calls[..<firstSubmit].contains { $0.hasPrefix("status ") }, "\(calls[..<firstSubmit])")
        #expect(rig.sink.messages.contains("a1 is reachable") && rig.sink.messages.contains("a2 is reachable"))
        // Without it, the executor probes every agent itself (once).
        let rig2 = ExecutorRig(agents: ["a1", "a2"])
        _ = try await rig2.executor().run(rig2.plan())
        let calls2 = await rig2.world.calls
        let first2 = try #require(calls2.firstIndex(of: "submit apply a1"))
        #expect(calls2[..<first2].filter { $0.hasPrefix("status ") }.count == 2)
    }

    @Test("one source for each default: the executor's timeouts are the inventory's, agent calls the client's")
    func oneSourceForTimeouts() {
        let t = RolloutTimeouts()
        let inv = Timeouts()
        #expect(t.gates == inv.gates && t.rebuild == inv.rebuild && t.drain == inv.drain)
        #expect(t.reboot == inv.reboot && t.ready == inv.ready)
        #expect(t.agentCall == AgentClient.defaultTimeout)
        #expect(ClusterSession.Overrides().agentTimeout == AgentClient.defaultTimeout)
    }
}
