import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Testing

extension GateWaitTests {
    @Test("a Ceph gate over a CephCluster the API does not have stops at once (unrecoverable), not at its timeout")
    func cephClusterMissingFailsFast() async throws {
        try await withCluster { server, client in
            // The fake starts without any CephCluster: a GET of rook-ceph/rook-ceph is a 404.
            #expect(server.state.get(.cephclusters, namespace: "rook-ceph", name: "rook-ceph", as: CephCluster.self) == nil)
            let clock = ContinuousClock()
            let started = clock.now
            let error = await #expect(throws: HealthGateError.self) {
                try await waitUntilHealthy(
                    [HealthGates.ceph(client, checkedAfter: nil, period: .milliseconds(20))],
                    deadline: clock.now.advanced(by: .seconds(600)), clock: clock)
            }
            #expect(error?.code == .unrecoverable)
            #expect(error?.message.contains("no CephCluster rook-ceph/rook-ceph") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("ceph.enabled: false") == true)
            // Well inside the 600 s deadline: no waiting at all, whatever the machine's load.
            #expect(started.duration(to: clock.now) < .seconds(300))

            // Once it exists, the same gate passes.
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: Date())
            _ = try await waitUntilHealthy(
                [HealthGates.ceph(client, checkedAfter: nil, period: .milliseconds(20))],
                deadline: clock.now.advanced(by: .seconds(60)), clock: clock)
        }
    }
}

extension GateWaitTests {
    @Test("Ceph freshness is judged on the cluster's clock (the API's Date header): a workstation behind would take an old check for fresh")
    func cephFreshnessOnTheClustersClock() async throws {
        try await withCluster { server, client in
            // The cluster's clock runs 120 s ahead of this machine's. Rook's last check ran 10 s (cluster time) before
            // the node came back, so it is stale, though by the local clock its stamp lies 110 s after the return.
            server.state.setClockSkew(120)
            let cameBack = Date()
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(110))
            let lines = Lines()
            let clock = ContinuousClock()
            _ = try await waitUntilHealthy(
                [HealthGates.ceph(client, checkedAfter: cameBack, period: .milliseconds(20))],
                deadline: clock.now.advanced(by: .seconds(60)), clock: clock
            ) { line in
                lines.append(line)
                // Rook's next check, 3 s after the return on the cluster's clock.
                if line.message.contains("stale") { server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(123)) }
            }
            #expect(lines.messages.first?.contains("(stale: checked") == true, "\(lines.messages)")
            #expect(lines.messages.last == "ceph state is HEALTH_OK via CephCluster rook-ceph/rook-ceph")
            let header = try #require(HTTPDate.parse(HTTPDate.format(server.state.clusterNow())))
            #expect(abs(header.timeIntervalSince(Date()) - 120) < 2)
        }
    }

    @Test("a cluster clock behind the workstation's does not make a fresh check look stale")
    func cephFreshnessClusterBehind() async throws {
        try await withCluster { server, client in
            server.state.setClockSkew(-120)
            let cameBack = Date()
            // Checked 3 s after the return (cluster time): stamped 117 s before it by the local clock.
            server.state.setCephHealth(health: "HEALTH_OK", lastChecked: cameBack.addingTimeInterval(-117))
            let lines = Lines()
            let clock = ContinuousClock()
            _ = try await waitUntilHealthy(
                [HealthGates.ceph(client, checkedAfter: cameBack, period: .milliseconds(20))],
                deadline: clock.now.advanced(by: .seconds(60)), clock: clock, report: { lines.append($0) })
            #expect(lines.messages == ["ceph state is HEALTH_OK via CephCluster rook-ceph/rook-ceph"])
        }
    }

    @Test("HTTPDate reads and writes RFC 9110's IMF-fixdate")
    func httpDate() {
        let d = Date(timeIntervalSince1970: 784_111_777)  // RFC 9110's example
        #expect(HTTPDate.format(d) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == d)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 +0000") == nil)
    }
}
