import Foundation
import Logging
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NK3Simulation
import Synchronization
import Testing

/// The rollout Lease's renewal when the Kubernetes API is away: an API that cannot be reached is not "another
/// rollout holds the lease" (exit 7) but unreachable (exit 3); a short outage is ridden out; and renewal goes on
/// through another API server when the one in use goes down (every k3s server serves the API).
@Suite struct LeaseRenewalTests {
    /// `FakeCluster`, whose lease renewal fails with `renewError` while `failing` says so.
    final class FlakyRenewal: RolloutCluster {
        let inner: FakeCluster
        /// Renewals that fail, counting down (Int.max: all).
        let failing: Mutex<Int>
        let attempts = Mutex(0)
        let renewError: any Error

        init(_ inner: FakeCluster, failing: Int, error: any Error) {
            self.inner = inner
            self.failing = Mutex(failing)
            self.renewError = error
        }

        func renewLease(holder: String, ttl: Duration) async throws -> RolloutLease {
            attempts.withLock { $0 += 1 }
            let fail = failing.withLock { n in
                guard n > 0 else { return false }
                if n != Int.max { n -= 1 }
                return true
            }
            if fail { throw renewError }
            return try await inner.renewLease(holder: holder, ttl: ttl)
        }
        func nodeReadiness(_ node: String, boot: NodeBoot?) async throws -> NodeReadiness {
            try await inner.nodeReadiness(node, boot: boot)
        }
        func cordon(_ node: String, reason: String) async throws { try await inner.cordon(node, reason: reason) }
        func uncordonIfOurs(_ node: String) async throws -> Bool { try await inner.uncordonIfOurs(node) }
        func cordons() async throws -> NodeCordons { try await inner.cordons() }
        func drainBlockers(nodes: [String]) async throws -> [DrainBlocker] { try await inner.drainBlockers(nodes: nodes) }
        func drain(_ node: String, timeout: Duration) async throws { try await inner.drain(node, timeout: timeout) }
        func runGates(since: Date?, timeout: Duration, report: @escaping @Sendable (GateReport) -> Void) async throws {
            try await inner.runGates(since: since, timeout: timeout, report: report)
        }
        func acquireLease(holder: String, ttl: Duration) async throws -> RolloutLease {
            try await inner.acquireLease(holder: holder, ttl: ttl)
        }
        func releaseLease(holder: String) async throws { try await inner.releaseLease(holder: holder) }
        func saveProgress(_ progress: RolloutProgress) async throws { try await inner.saveProgress(progress) }
        func loadProgress() async throws -> RolloutProgress? { try await inner.loadProgress() }
        func clearProgress() async throws { try await inner.clearProgress() }
    }

    /// The error `KubeClient` throws when no API server can be connected to.
    static let unreachable = KubeError(
        .transport, "cannot reach the Kubernetes API for /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/nk3-rollout-x",
        underlying: "connection refused")

    func run(_ rig: ExecutorRig, _ cluster: FlakyRenewal) async -> Result<RolloutSummary, any Error> {
        let clock = rig.clock
        let executor = RolloutExecutor(
            agents: FakeAgents(world: rig.world), cluster: cluster,
            configuration: .init(holder: "tester@host/1", leaseTTL: .seconds(60), pollInterval: .milliseconds(100), timeouts: ExecutorRig.timeouts),
            clock: clock, now: { clock.date }, sink: rig.sink, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        do { return .success(try await executor.run(rig.plan())) } catch { return .failure(error) }
    }

    @Test("an API that stays unreachable for the lease's TTL aborts as unreachable (exit 3), not as a held lease")
    func unreachableAPIIsNotLockHeld() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.rebuildPolls = 1_000 }  // 100 s of virtual rebuild
        let cluster = FlakyRenewal(FakeCluster(world: rig.world, clock: rig.clock), failing: Int.max, error: Self.unreachable)
        let f = failure(await run(rig, cluster))
        #expect(f?.kind == .unreachable)
        #expect(f?.exitCode == 3)
        #expect(f?.message.contains("the Kubernetes API could not be reached to renew the cluster's rollout lease for 1m") == true, "\(f?.message ?? "")")
        #expect(f?.message.contains("another rollout holds") == false)
        // Renewal was retried sooner than every 20 s after the first failure.
        #expect(cluster.attempts.withLock { $0 } > 3)
    }

    @Test("an API error that is not a transport failure aborts as other (exit 1)")
    func refusedRenewalIsOther() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.rebuildPolls = 1_000 }
        let forbidden = KubeError(.forbidden, "leases.coordination.k8s.io is forbidden", httpStatus: 403)
        let cluster = FlakyRenewal(FakeCluster(world: rig.world, clock: rig.clock), failing: Int.max, error: forbidden)
        let f = failure(await run(rig, cluster))
        #expect(f?.kind == .other)
        #expect(f?.message.contains("could not renew the cluster's rollout lease for 1m") == true, "\(f?.message ?? "")")
    }

    @Test("an outage shorter than the TTL is ridden out: the rollout completes")
    func shortOutageIsRiddenOut() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.rebuildPolls = 1_000 }
        // The first renewal (20 s) and the retries after it fail for about 30 s: still within the 60 s TTL.
        let cluster = FlakyRenewal(FakeCluster(world: rig.world, clock: rig.clock), failing: 30, error: Self.unreachable)
        let r = await run(rig, cluster)
        #expect(failure(r) == nil, "\(failure(r)?.message ?? "")")
        await rig.expectConverged()
        #expect(cluster.attempts.withLock { $0 } > 30)
    }

    @Test("renewal goes on through another API server when the one in use goes down")
    func renewalSurvivesAnEndpointMove() async throws {
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let server = try await FakeKubeServer.start(logger: logger)
        do {
            let second = try await server.addEndpoint(host: "127.0.0.2")
            var config = try server.clientConfig()
            config.extraServers = [second.absoluteString]
            var options = KubeClient.Options(maxAttempts: 2, initialBackoff: .milliseconds(1))
            options.connectTimeout = .seconds(5)
            try await KubeClient.withClient(config: config, options: options, logger: logger) { kube in
                let cluster = KubeRolloutCluster(
                    kube: kube, clusterName: "c", watchNamespaces: [], ceph: nil, clock: ContinuousClock(), logger: logger)
                _ = try await cluster.acquireLease(holder: "me@host/1", ttl: .seconds(60))
                let first: Lease? = server.state.get(.leases, namespace: "kube-system", name: cluster.leaseName)
                try await server.setEndpoint(server.url, down: true)
                _ = try await cluster.renewLease(holder: "me@host/1", ttl: .seconds(60))
                #expect(kube.currentServer == second)
                let renewed: Lease? = server.state.get(.leases, namespace: "kube-system", name: cluster.leaseName)
                #expect(renewed?.spec.holderIdentity == "me@host/1")
                #expect(renewed?.metadata.resourceVersion != first?.metadata.resourceVersion, "written again")
                #expect(renewed?.spec.leaseTransitions == first?.spec.leaseTransitions, "a renewal, not a takeover")
                // Progress is saved through the second server too.
                try await cluster.saveProgress(RolloutProgress(planFingerprint: "test"))
                #expect(try await cluster.loadProgress()?.planFingerprint == "test")
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }
}
