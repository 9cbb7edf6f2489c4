import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Synchronization
import Testing

/// The Ceph gate with and without Rook's toolbox, in simulated time (100x): with the toolbox the gate asks Ceph
/// itself, so a node's Ceph wait holds no Rook refresh interval; without it every node waits for a Rook check made
/// after it came back.
extension E2E {
@Suite("E2E: Ceph gate via Rook's toolbox (simulation)", .timeLimit(.minutes(3)))
struct E2ECephToolboxTests {
    static let factor = 100.0

    static func describe(_ wait: [String: Double]) -> String {
        wait.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value))" }.joined(separator: ", ")
    }

    struct Run {
        var summary: RolloutSummary
        /// The Ceph gate lines, in order.
        var cephLines: [String]
        /// Rook CephCluster status checks the simulation made during the rollout.
        var rookChecks: Int
        /// Per node: simulated seconds from its uncordon (its gates start) to its Ceph gate's passing line.
        var cephWait: [String: Double]
        var transcript: String
    }

    func reboot(toolbox: Bool, rookInterval: TimeInterval) async throws -> Run {
        var run: Run? = nil
        try await E2ECluster.with(speed: .factor(Self.factor), rookTicker: false, configure: { o in
            o.cephToolbox = toolbox
            o.cephCheckInterval = rookInterval
        }) { c in
            let sink = E2ESink()
            let checksBefore = c.sim.cephChecks
            let summary = try await c.rollout(.reboot, sink: sink)
            // A node's gates start when it is uncordoned; its Ceph wait ends with the next passing Ceph line.
            var wait: [String: Double] = [:]
            var current: (node: String, since: Date)? = nil
            for e in sink.events {
                if e.phase == .uncordon, let n = e.node, e.message.hasSuffix(" uncordoned") { current = (n, e.timestamp) }
                if e.message.hasPrefix("ceph state is HEALTH_OK"), let (n, since) = current, wait[n] == nil {
                    wait[n] = e.timestamp.timeIntervalSince(since) * Self.factor
                }
            }
            run = Run(
                summary: summary, cephLines: sink.messages.filter { $0.hasPrefix("ceph state is") },
                rookChecks: c.sim.cephChecks - checksBefore, cephWait: wait, transcript: sink.transcript)
        }
        return try #require(run)
    }

    @Test("with the toolbox a reboot rollout passes every node's Ceph gate on `ceph status`, with no Rook refresh at all")
    func toolboxNeedsNoRookRefresh() async throws {
        // Rook would refresh only every 10^6 simulated seconds: a gate that needed a refresh could never pass.
        let r = try await reboot(toolbox: true, rookInterval: 1_000_000)
        #expect(r.summary.updated.count == 3, "\(r.transcript)")
        #expect(r.rookChecks == 0)
        #expect(!r.cephLines.isEmpty)
        #expect(r.cephLines.allSatisfy { $0.contains("via ceph status in rook-ceph/rook-ceph-tools-") }, "\(r.cephLines)")
        #expect(r.cephWait.count == 3, "\(r.transcript)")
        print("SIMULATION ceph gate wait per node with the toolbox (simulated s): \(Self.describe(r.cephWait))")
    }

    @Test("without the toolbox every node waits for a Rook check made after it came back")
    func withoutToolboxWaitsForRook() async throws {
        let r = try await reboot(toolbox: false, rookInterval: 60)
        #expect(r.summary.updated.count == 3, "\(r.transcript)")
        #expect(r.cephLines.allSatisfy { $0.hasSuffix("via CephCluster rook-ceph/rook-ceph") }, "\(r.cephLines)")
        // One fresh check per node at least: node i+1 goes down only after node i's gate passed on a check made
        // after node i returned.
        #expect(r.rookChecks >= 3)
        #expect(r.cephWait.count == 3, "\(r.transcript)")
        print("SIMULATION ceph gate wait per node, CephCluster only (simulated s): \(Self.describe(r.cephWait))")
    }
}
}
