import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Synchronization
import Testing

/// Every node of the simulated cluster's first three is a k3s server with its own API endpoint, and the kubeconfig
/// names the first (as a k3s.yaml copied from server 1 does). When nk3 reboots a server its endpoint refuses
/// connections until the node's kubelet is ready again (k3s runs the API server and the kubelet in one process).
extension E2E {
    @Suite("E2E: the API server goes down with its node (simulation)", .timeLimit(.minutes(2)))
    struct E2EAPIServerRebootTests {
        @Test("a 3-server rollout whose kubeconfig names server 1 completes: nk3 moves to another API server first")
        func kubeconfigServerRebooted() async throws {
            try await E2ECluster.with(nodes: 4, servers: 3) { c in
                let sim = c.sim
                let first = try #require(sim.apiEndpoints["sim-node-1"])
                #expect(first == sim.kube.url, "the kubeconfig names server 1")
                #expect(sim.apiEndpoints.count == 3 && sim.apiEndpoints["sim-node-4"] == nil)
                // While a server is down its endpoint must be too: checked on every event about it.
                let sink = E2ESink()
                let seenDown = Mutex<Set<String>>([])
                let upWhileDown = Mutex<[String]>([])
                sink.onEvent { e in
                    guard let node = e.node, let m = try? sim.member(node), let api = sim.apiEndpoints[node] else { return }
                    let up = sim.kube.isUp(api)
                    if m.node.snapshot.power != .up {
                        if up { upWhileDown.withLock { $0.append("\(node): \(e.message)") } }
                    }
                    if !up { seenDown.withLock { _ = $0.insert(node) } }
                }
                let summary = try await c.rollout(.reboot, sink: sink)
                #expect(Set(summary.updated) == Set(c.names), "\(sink.transcript)")
                #expect(sim.apiOutages == 3, "each server's API went down once")
                #expect(seenDown.withLock { $0 }.isSubset(of: ["sim-node-1", "sim-node-2", "sim-node-3"]))
                #expect(upWhileDown.withLock { $0 }.isEmpty)
                for (name, url) in sim.apiEndpoints { #expect(sim.kube.isUp(url), "\(name)'s API is back") }
                // Before server 1 went down nk3 moved to server 2, and before server 2 went down, off it again.
                let moves = sink.messages.filter { $0.hasPrefix("Kubernetes API: using ") }
                let others = ["sim-node-2", "sim-node-3"].compactMap { sim.apiEndpoints[$0]?.absoluteString }
                let first1 = try #require(moves.first, "\(sink.transcript)")
                #expect(first1.hasSuffix(" while sim-node-1 reboots (its API server goes down with it)"), "\(sink.transcript)")
                #expect(others.contains { first1.hasPrefix("Kubernetes API: using \($0) ") }, "\(first1)")
                #expect(moves.contains { $0.hasSuffix("while sim-node-2 reboots (its API server goes down with it)") }, "\(sink.transcript)")
                #expect(!moves.contains { $0.contains("sim-node-4") }, "an agent node serves no API")
                #expect(c.cordoned().isEmpty)
            }
        }
    }
}
