import Foundation
import NK3Coordinator
import NK3Simulation
import Testing

/// Issue 20's goal of at most 3 agent mTLS handshakes per node in a rollout, counted where they happen: by the real
/// agent servers (`SimulatedCluster.Member.agentConnections`, every TLS connection an agent process accepted).
extension E2E {
    @Suite("E2E: agent connections per node in a rollout (simulation)", .timeLimit(.minutes(2)))
    struct E2EHandshakeTests {
        @Test("an apply rollout of 5 nodes opens at most 3 mTLS connections per node (bundle, polls and reboot share one; reachability and confirm the next)")
        func atMostThreeHandshakesPerNode() async throws {
            try await E2ECluster.with(nodes: 5) { c in
                try c.editTemplate()
                let before = c.sim.members.reduce(0) { $0 + $1.agentConnections }
                let sink = E2ESink()
                let summary = try await c.rollout(.apply(.boot), sink: sink)
                #expect(summary.updated.count == 5, "\(sink.transcript)")
                let perNode = c.sim.members.map { ($0.name, $0.agentConnections) }
                let total = perNode.reduce(0) { $0 + $1.1 } - before
                // 2 per node unless a kept connection aged out (5 s idle) on a very loaded machine: then 3.
                #expect(total <= 3 * 5, "\(total) connections for 5 nodes: \(perNode)")
            }
        }
    }
}
