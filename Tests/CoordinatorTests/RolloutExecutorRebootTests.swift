import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// The executor after a reboot, against the fake world: stale Ready, and a node that never comes back.
@Suite struct RolloutExecutorRebootTests {
    @Test("a Node still Ready from before a quick reboot is waited out: uncordon only once the new boot reported")
    func staleReadyIsWaitedOut() async throws {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.update("a1") { $0.staleReadyPollsAfterBoot = 5 }
        let summary = try await rig.executor().run(rig.plan())
        #expect(summary.updated == ["a1", "a2"])
        #expect(await rig.world.node("a1").uncordonedWhileStale == 0)
        #expect(rig.sink.messages.contains { $0.hasPrefix("a1 shows Ready from before its reboot (boot id boot-a1-1, now boot-a1-2)") })
        let calls = await rig.world.calls
        let readyPolls = calls.filter { $0 == "ready? a1" }.count
        #expect(readyPolls >= 6, "five stale answers, then the new boot's: \(readyPolls)")
        await rig.expectConverged()
    }

    @Test("a Node that never reports its new boot fails the Ready wait naming the stale boot id")
    func staleForeverTimesOut() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.staleReadyPollsAfterBoot = Int.max }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .timeout && f?.step == .waitReady)
        #expect(f?.message.contains("still shows the node as it was before it (boot id boot-a1-1, not boot-a1-2)") == true, "\(f?.message ?? "")")
        #expect(await rig.world.node("a1").cordonedByNK3 != nil, "never uncordoned on a stale Ready")
    }

    @Test("answering once with the old boot id and then staying down is 'did not come back' (exit 3)")
    func oldAnswerThenGone() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") {
            $0.oldBootAnswersAfterReboot = 1
            $0.neverReturns = true
        }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .unreachable)
        #expect(f?.exitCode == 3)
        #expect(f?.message.contains("did not come back within 30s") == true, "\(f?.message ?? "")")
    }
}
