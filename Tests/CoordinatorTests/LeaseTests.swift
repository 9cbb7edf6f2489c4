import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// One rollout per cluster: the Lease (docs/UPSTREAM.md#lease) is taken first, renewed, and released.
@Suite struct LeaseTests {
    @Test func heldLeaseFailsFastNamingHolderAndExpiry() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.setLease(RolloutLease(holder: "alice@laptop/4242", expiresAt: rig.clock.date.addingTimeInterval(42)))
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .lockHeld)
        #expect(f?.exitCode == 7)
        #expect(f?.message.contains("alice@laptop/4242") == true)
        #expect(f?.message.contains("expires at 2024-05-01T12:00:42.000Z (in 42s)") == true)
        // Nothing else was touched, and the other holder's lease is intact.
        #expect(await rig.world.calls == ["lease acquire tester@host/1"])
        #expect(await rig.world.lease?.holder == "alice@laptop/4242")
        #expect(rig.clock.now.offset == .zero)  // no waiting
    }

    @Test func expiredLeaseOfADeadCoordinatorIsTakenOver() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.setLease(RolloutLease(holder: "dead", expiresAt: rig.clock.date.addingTimeInterval(60)))
        #expect(failure(await rig.run(rig.plan()))?.kind == .lockHeld)
        rig.clock.advance(by: .seconds(61))
        _ = try await rig.executor().run(rig.plan())
        await rig.expectConverged()
    }

    @Test func leaseIsRenewedDuringALongStepAndReleasedAtTheEnd() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.rebuildPolls = 1_000 }  // 100 s of virtual rebuild
        _ = try await rig.executor().run(rig.plan())
        #expect(await rig.world.leaseRenewals >= 4)  // every 20 s (a third of the 60 s TTL)
        #expect(await rig.world.lease == nil)
        #expect((await rig.world.calls).last == "lease release tester@host/1")
    }

    @Test func losingTheLeaseMidRolloutAborts() async {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.update("a1") { $0.rebuildPolls = 1_000 }
        await rig.world.setHook { world, call in
            if call == "operation a1" && world.lease?.holder == "tester@host/1" {
                world.lease = RolloutLease(holder: "bob@ci/7", expiresAt: world.clock.date.addingTimeInterval(60))
            }
        }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .lockHeld)
        #expect(f?.message.contains("lost the cluster's rollout lease to bob@ci/7") == true)
        #expect(!(await rig.world.calls).contains("cordon a1"))
        // Not ours any more: not released.
        #expect(await rig.world.lease?.holder == "bob@ci/7")
    }
}
