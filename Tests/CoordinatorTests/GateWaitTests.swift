import Foundation
import Logging
@testable import NK3Coordinator
import NK3Kube
import NK3Simulation
import Synchronization
import Testing

/// `waitUntilHealthy` over the real client and the fake API server (real TLS on 127.0.0.1).
@Suite("Health gates against the fake API server")
struct GateWaitTests {
    static let logger = Logger(label: "nk3.tests.gates") { _ in SwiftLogNoOpLogHandler() }

    func withCluster<R: Sendable>(_ body: (FakeKubeServer, KubeClient) async throws -> R) async throws -> R {
        let server = try await FakeKubeServer.start(logger: Self.logger)
        let client = try KubeClient(
            config: try server.clientConfig(),
            options: .init(requestTimeout: .seconds(20), initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(20)),
            logger: Self.logger)
        do {
            let r = try await body(server, client)
            try await client.shutdown()
            await server.shutdown()
            return r
        } catch {
            try? await client.shutdown()
            await server.shutdown()
            throw error
        }
    }

    final class Lines: Sendable {
        let lines = Mutex<[GateReport]>([])
        func append(_ l: GateReport) { lines.withLock { $0.append(l) } }
        var messages: [String] { lines.withLock { $0.map(\.message) } }
    }

    @Test("gates report the Python nk3's lines, wait while a DaemonSet recovers, and pass once it is healthy")
    func waitsForRecovery() async throws {
        try await withCluster { server, client in
            let s = server.state
            s.addNode("n1")
            s.addNode("n2")
            s.setDaemonSet(namespace: "default", name: "svclb", desired: 2, available: 1)
            s.setDaemonSet(namespace: "kube-system", name: "a", desired: 2, available: 2)
            s.setDeployment(namespace: "default", name: "web", replicas: 2, available: 2)
            let lines = Lines()
            let clock = ContinuousClock()
            let results = try await waitUntilHealthy(
                HealthGates.standard(client, watchNamespaces: ["default", "kube-system"], period: .milliseconds(20)),
                deadline: clock.now.advanced(by: .seconds(30)), clock: clock
            ) { line in
                lines.append(line)
                // The DaemonSet recovers only after the gate has reported it recovering: no sleeps.
                if line.message == "1 daemonsets recovering in namespace default" {
                    s.setDaemonSet(namespace: "default", name: "svclb", desired: 2, available: 2)
                }
            }
            #expect(results.count == 5)
            let m = lines.messages
            #expect(m.contains("kubelet is ready on n1") && m.contains("kubelet is ready on n2"))
            let recovering = try #require(m.firstIndex(of: "1 daemonsets recovering in namespace default"))
            let healthy = try #require(m.firstIndex(of: "1 daemonsets healthy in namespace default"))
            #expect(recovering < healthy)
            #expect(m.contains("1 daemonsets healthy in namespace kube-system"))
            #expect(m.contains("1 deployments healthy in namespace default"))
            #expect(m.contains("0 deployments healthy in namespace kube-system"))
            // Lines are reported when they change, not on every poll.
            #expect(m.filter { $0 == "kubelet is ready on n1" }.count == 1)
        }
    }

    @Test("a node that never becomes Ready times the gates out, naming the gate and the node")
    func timeoutNamesGate() async throws {
        try await withCluster { server, client in
            server.state.addNode("n1")
            server.state.addNode("n2", ready: false)
            let clock = ContinuousClock()
            let error = await #expect(throws: HealthGateError.self) {
                try await waitUntilHealthy(
                    [HealthGates.kubeletReady(client, period: .milliseconds(20))],
                    deadline: clock.now.advanced(by: .milliseconds(300)), clock: clock)
            }
            #expect(error?.code == .timeout)
            #expect(error?.failingGates == ["kubelet ready on every node"])
            #expect(error?.message.contains("kubelet not ready on n2 (False/KubeletNotReady") == true)
            #expect(error?.rolloutFailureKind == .timeout)
        }
    }

    @Test("a stale HEALTH_OK is not accepted; the next check after the node came back is")
    func cephFreshness() async throws {
        try await withCluster { server, client in
            let cameBack = Date(timeIntervalSince1970: 1_714_564_800)  // 2024-05-01T12:00:00Z
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(-30))
            let lines = Lines()
            let clock = ContinuousClock()
            _ = try await waitUntilHealthy(
                [HealthGates.ceph(client, checkedAfter: cameBack, period: .milliseconds(20))],
                deadline: clock.now.advanced(by: .seconds(30)), clock: clock
            ) { line in
                lines.append(line)
                if line.message.contains("stale") {
                    // Rook's next check, after the node came back, first finds a warning, then OK.
                    server.state.setCephHealth(
                        health: "HEALTH_WARN", details: ["PG_DEGRADED": .init(severity: "HEALTH_WARN", message: "Degraded data redundancy")],
                        lastChecked: cameBack.addingTimeInterval(60))
                } else if line.message == "ceph state is HEALTH_WARN via CephCluster rook-ceph/rook-ceph" {
                    server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(120))
                }
            }
            let m = lines.messages
            #expect(m.first?.hasPrefix("ceph state is HEALTH_OK (stale: checked 2024-05-01T11:59:30Z") == true)
            #expect(m.dropFirst().first == "ceph state is HEALTH_WARN via CephCluster rook-ceph/rook-ceph")
            #expect(m.last == "ceph state is HEALTH_OK via CephCluster rook-ceph/rook-ceph")
            let ceph = try #require(server.state.get(.cephclusters, namespace: "rook-ceph", name: "rook-ceph", as: CephCluster.self))
            #expect(ceph.status?.ceph?.previousHealth == "HEALTH_WARN")
        }
    }

    @Test("bad credentials stop the gates at once instead of waiting out the deadline")
    func unauthorizedFailsFast() async throws {
        let server = try await FakeKubeServer.start(logger: Self.logger)
        let config = KubeConfig(server: server.url, certificateAuthorityPEM: try server.ca.certificatePEM, token: "not-a-known-token")
        let client = try KubeClient(config: config, logger: Self.logger)
        let clock = ContinuousClock()
        let error = await #expect(throws: HealthGateError.self) {
            try await waitUntilHealthy(
                [HealthGates.kubeletReady(client)], deadline: clock.now.advanced(by: .seconds(60)), clock: clock)
        }
        #expect(error?.code == .unrecoverable)
        try await client.shutdown()
        await server.shutdown()
    }

    @Test("kubelet gate: one list at the first check; while it waits, one more list and a watch, then no lists; a watch the server ends is replaced by a list and a new watch; a change arrives through the watch; passing ends the watch; dropping the gate ends its watch (docs/UPSTREAM.md#watch)")
    func kubeletGateWatchesWhileWaiting() async throws {
        try await withCluster { server, client in
            let s = server.state
            s.addNode("n1")
            s.addNode("n2")
            s.setNodeReady("n1", false)
            let lists = { s.stats.byRoute["GET nodes (list)"] ?? 0 }
            var gate: HealthGate? = HealthGates.kubeletReady(client)
            var passed = try await gate!.check().passed
            #expect(!passed)
            #expect(lists() == 1 && s.stats.watches == 0, "most gate waits pass at once: no watch on the first check")
            passed = try await gate!.check().passed
            #expect(!passed)
            #expect(lists() == 2)
            #expect(await Self.within { s.stats.watches == 1 && s.openWatches == 1 }, "the watch request is on its way")
            for _ in 0..<5 {
                passed = try await gate!.check().passed
                #expect(!passed)
            }
            #expect(lists() == 2, "checks read the watched view")

            s.endWatches()  // as at the watch's timeoutSeconds
            #expect(await Self.within { _ = try? await gate?.check(); return s.stats.watches == 2 })
            #expect(lists() == 3, "one list to start the new watch from")
            #expect(await Self.within { s.openWatches == 1 })

            s.setNodeReady("n1", true)
            #expect(await Self.within { (try? await gate?.check().passed) == true }, "the change came through the watch")
            #expect(lists() == 3)
            #expect(await Self.within { s.openWatches == 0 }, "a passing gate ends its watch")
            passed = try await gate!.check().passed
            #expect(passed)
            #expect(lists() == 4 && s.stats.watches == 2, "the next check lists afresh and starts no watch")

            s.setNodeReady("n1", false)
            for _ in 0..<2 {
                passed = try await gate!.check().passed
                #expect(!passed)
            }
            #expect(await Self.within { s.stats.watches == 3 && s.openWatches == 1 })
            gate = nil
            #expect(await Self.within { s.openWatches == 0 }, "the gate's watch ends with it")
        }
    }

    @Test("a rollout's gate waits share one node watch: one list for the whole rollout, not one per gate wait; a Ready change still comes through")
    func rolloutGatesShareOneNodeWatch() async throws {
        try await withCluster { server, client in
            let s = server.state
            for n in ["n1", "n2", "n3"] { s.addNode(n) }
            let lists = { s.stats.byRoute["GET nodes (list)"] ?? 0 }
            let cluster = KubeRolloutCluster(
                kube: client, clusterName: "c", watchNamespaces: [], ceph: nil, pollInterval: .milliseconds(20),
                clock: ContinuousClock(), logger: Self.logger)
            for _ in 0..<5 {
                try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in })
            }
            #expect(lists() == 1, "one list, then the watch: \(s.stats.byRoute)")
            #expect(await Self.within { s.stats.watches == 1 && s.openWatches == 1 }, "the watch outlives a passing gate")

            // A node that goes NotReady holds the next gate wait until its Ready comes back through the watch.
            #expect(await Self.within { cluster.nodeWatch.isWatching })
            s.setNodeReady("n2", false)
            let gateWait = Task { try await cluster.runGates(since: nil, timeout: .seconds(30), report: { _ in }) }
            #expect(await Self.within {
                (try? await cluster.nodeWatch.nodes())?.first { $0.name == "n2" }?.readyCondition?.status == "False"
            })
            s.setNodeReady("n2", true)
            try await gateWait.value
            #expect(lists() == 1, "still the one list")
        }
    }

    /// Polls `condition` every 10 ms for up to 20 s (a deadline with slack, not a timing assertion).
    static func within(_ condition: () async -> Bool) async -> Bool {
        let end = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < end {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return await condition()
    }
}
