import Foundation
import Logging
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Testing

/// The real `RolloutCluster` adapter against the simulated Kubernetes API over real TLS: the Lease that
/// locks one rollout per cluster (docs/UPSTREAM.md#lease), progress carried on it, and nk3-only uncordon.
@Suite("KubeRolloutCluster against the fake API")
struct KubeRolloutClusterTests {
    let logger = Logger(label: "test.kube-rollout-cluster")

    func withCluster(_ body: (FakeKubeState, KubeRolloutCluster<ContinuousClock>) async throws -> Void) async throws {
        let state = FakeKubeState()
        state.addNode("n1")
        state.addNode("n2")
        let server = try await FakeKubeServer.start(state: state, logger: logger)
        do {
            try await KubeClient.withClient(config: try server.clientConfig(), logger: logger) { kube in
                let cluster = KubeRolloutCluster(
                    kube: kube, clusterName: "Test_Cluster", watchNamespaces: [], ceph: nil, clock: ContinuousClock(),
                    logger: logger)
                try await body(state, cluster)
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("a second holder fails fast naming the holder; release lets it in")
    func leaseHeldFailsFast() async throws {
        try await withCluster { _, cluster in
            #expect(cluster.leaseName == "nk3-rollout-test-cluster")
            let mine = try await cluster.acquireLease(holder: "alice@hostA/1", ttl: .seconds(60))
            #expect(mine.holder == "alice@hostA/1")
            do {
                _ = try await cluster.acquireLease(holder: "bob@hostB/2", ttl: .seconds(60))
                Issue.record("second holder got the lease")
            } catch let held as RolloutLeaseHeld {
                #expect(held.holder == "alice@hostA/1")
                #expect(held.expiresAt > Date())
            }
            // Re-acquiring one's own lease (renewal) works.
            _ = try await cluster.renewLease(holder: "alice@hostA/1", ttl: .seconds(60))
            try await cluster.releaseLease(holder: "alice@hostA/1")
            let bob = try await cluster.acquireLease(holder: "bob@hostB/2", ttl: .seconds(60))
            #expect(bob.holder == "bob@hostB/2")
        }
    }

    @Test("an expired lease is taken over")
    func expiredLeaseTakenOver() async throws {
        try await withCluster { _, cluster in
            _ = try await cluster.acquireLease(holder: "alice@hostA/1", ttl: .seconds(1))
            // Wait (bounded) until the 1 s lease has expired by the wall clock, then take it.
            let deadline = Date().addingTimeInterval(30)
            while true {
                do {
                    _ = try await cluster.acquireLease(holder: "bob@hostB/2", ttl: .seconds(60))
                    break
                } catch is RolloutLeaseHeld {
                    #expect(Date() < deadline)
                    if Date() >= deadline { return }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    @Test("a killed nk3 on this host (holder pid gone) is taken over at once; a live local one is not")
    func deadLocalHolder() async throws {
        let me = "op@host/\(getpid())"
        #expect(!LeaseHolders.isDeadLocalHolder("op@host/\(getpid())", me: "op@host/99999999"))
        #expect(LeaseHolders.isDeadLocalHolder("op@host/2147483646", me: me))
        #expect(!LeaseHolders.isDeadLocalHolder("op@otherhost/2147483646", me: me))
        try await withCluster { _, cluster in
            _ = try await cluster.acquireLease(holder: "op@host/2147483646", ttl: .seconds(600))
            let taken = try await cluster.acquireLease(holder: me, ttl: .seconds(60))
            #expect(taken.holder == me)
        }
    }

    @Test("progress is saved on the Lease, loaded back and cleared")
    func progressRoundTrip() async throws {
        try await withCluster { _, cluster in
            #expect(try await cluster.loadProgress() == nil)
            _ = try await cluster.acquireLease(holder: "alice@hostA/1", ttl: .seconds(60))
            let progress = RolloutProgress(
                planFingerprint: "abc", done: ["n1": "hash1"],
                inFlight: ["n2": .init(step: .drain, applySerial: 42, operationID: "op-1", bootIDBeforeReboot: "b1")])
            try await cluster.saveProgress(progress)
            #expect(try await cluster.loadProgress() == progress)
            try await cluster.clearProgress()
            #expect(try await cluster.loadProgress() == nil)
        }
    }

    @Test("progress saves after our own write take one request (no GET); a write by someone else costs a 409 and a re-read, and is not lost")
    func progressSaveUsesLastWrite() async throws {
        try await withCluster { state, cluster in
            _ = try await cluster.acquireLease(holder: "alice@hostA/1", ttl: .seconds(60))
            func progress(_ n: Int) -> RolloutProgress {
                RolloutProgress(planFingerprint: "p", done: [:], inFlight: ["n1": .init(step: .drain, applySerial: UInt64(n))])
            }
            let before = state.stats.requests
            try await cluster.saveProgress(progress(1))
            try await cluster.saveProgress(progress(2))
            #expect(state.stats.requests - before == 2, "one PUT each")
            // Another writer changes the Lease (a label here): our next save conflicts, re-reads, keeps theirs.
            state.update(.leases, namespace: cluster.leaseNamespace, name: cluster.leaseName, as: Lease.self) {
                $0.metadata.labels = ["touched-by": "someone-else"]
            }
            let mid = state.stats.requests
            try await cluster.saveProgress(progress(3))
            #expect(state.stats.requests - mid == 3, "PUT (409), GET, PUT")
            #expect(try await cluster.loadProgress() == progress(3))
            let lease: Lease? = state.get(.leases, namespace: cluster.leaseNamespace, name: cluster.leaseName)
            #expect(lease?.metadata.labels?["touched-by"] == "someone-else")
            #expect(lease?.spec.holderIdentity == "alice@hostA/1")
        }
    }

    @Test("cordon is recorded; uncordon only undoes nk3's own cordon")
    func cordonRules() async throws {
        try await withCluster { state, cluster in
            try await cluster.cordon("n1", reason: "nk3 rollout")
            #expect(try await cluster.cordons() == NodeCordons(byNK3: ["n1": "nk3 rollout"]))
            // Somebody else cordons n2 by hand: nk3 neither claims nor undoes it.
            // (Stored without a field manager: nk3's own client would record itself as the manager.)
            state.update(.nodes, name: "n2", as: Node.self) { $0.spec?.unschedulable = true }
            #expect(try await cluster.cordons() == NodeCordons(byNK3: ["n1": "nk3 rollout"], byOthers: ["n2": ""]))
            #expect(try await cluster.uncordonIfOurs("n2") == false)
            #expect(state.node("n2")?.isUnschedulable == true)
            #expect(try await cluster.uncordonIfOurs("n1") == true)
            #expect(state.node("n1")?.isUnschedulable == false)
            #expect(try await cluster.cordons().byNK3.isEmpty)
        }
    }

    @Test("nk3's annotations on a node someone uncordoned are removed, so a later cordon by a person is not taken for nk3's")
    func staleAnnotationsAreForgotten() async throws {
        try await withCluster { state, cluster in
            try await cluster.cordon("n1", reason: "nk3 rollout")
            // `kubectl uncordon n1`: spec.unschedulable only; nk3's annotations stay.
            _ = try await cluster.kube.setUnschedulable("n1", false)
            #expect(state.node("n1")?.annotation(NK3Annotations.cordonedBy) != nil)
            #expect(try await cluster.cordons() == NodeCordons())
            #expect(state.node("n1")?.annotation(NK3Annotations.cordonedBy) == nil, "the stale record is gone")
            // Now a person cordons it for maintenance: it is theirs, and nk3 leaves it cordoned.
            state.update(.nodes, name: "n1", as: Node.self) { $0.spec?.unschedulable = true }
            #expect(try await cluster.cordons() == NodeCordons(byOthers: ["n1": ""]))
            #expect(try await cluster.uncordonIfOurs("n1") == false)
            #expect(state.node("n1")?.isUnschedulable == true)
        }
    }
}
