import Foundation
import Logging
import NK3Coordinator
import NK3Kube

/// Scenario `gate`: how soon the health gates notice that the cluster became healthy. The standard gate set
/// (kubelet Ready on every node, DaemonSets and Deployments of a watched namespace) waits with
/// `waitUntilHealthy` at the period nk3's rollouts use (`pollInterval`, 100 ms) while one node is NotReady;
/// the fake API then marks it Ready at a moment spread over the poll phase, and the figure is the time from
/// that write to `waitUntilHealthy` returning.
struct GateBench {
    let options: BenchRunner.Options
    let logger: Logger
    /// The period `nk3 apply`/`upgrade` pass to the gates (ClusterSession.rollout's default pollInterval).
    static let period: Duration = .milliseconds(100)

    func run(into result: inout BenchScenarioResult) async throws {
        let server = try await FakeKubeServer.start(logger: logger)
        do {
            try await measure(server: server, into: &result)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    private func measure(server: FakeKubeServer, into result: inout BenchScenarioResult) async throws {
        let state = server.state
        let nodes = (1...5).map { "gate-node-\($0)" }
        for (i, n) in nodes.enumerated() { state.addNode(n, controlPlane: i < 3) }
        state.setDaemonSet(namespace: "default", name: "svclb", desired: nodes.count, available: nodes.count)
        state.setDeployment(namespace: "default", name: "web", replicas: 3, available: 3)
        let last = nodes[nodes.count - 1]
        let clock = ContinuousClock()
        var latency: [Double] = []
        var rounds: [Double] = []
        var gateCount = 0
        try await KubeClient.withClient(config: try server.clientConfig(), logger: logger) { kube in
            let gates = HealthGates.standard(kube, watchNamespaces: ["default"], period: Self.period)
            gateCount = gates.count
            // Warm up: connections, lazy initialisation; and the cost of one passing round.
            for _ in 0..<3 {
                let t = clock.now
                _ = try await waitUntilHealthy(gates, deadline: clock.now.advanced(by: .seconds(10)), clock: clock)
                rounds.append(t.duration(to: clock.now).milliseconds)
            }
            for i in 0..<options.gateRuns {
                state.setNodeReady(last, false)
                let waiter = Task { () throws -> ContinuousClock.Instant in
                    _ = try await waitUntilHealthy(gates, deadline: clock.now.advanced(by: .seconds(30)), clock: clock)
                    return clock.now
                }
                // Spread the moment of recovery over the poll phase: 30 ms plus i·37 mod 100 ms after the wait began.
                try await Task.sleep(for: .milliseconds(30 + (i * 37) % 100))
                let healthy = clock.now
                state.setNodeReady(last, true)
                let returned = try await waiter.value
                latency.append(healthy.duration(to: returned).milliseconds)
            }
        }
        result.figures.append(
            BenchFigure(
                "healthy → waitUntilHealthy returned", unit: "ms", samples: latency, target: "≤ 100 ms",
                met: { $0 <= 100 }))
        result.figures.append(BenchFigure("  one passing round of all gates", unit: "ms", samples: rounds))
        result.notes.append(
            "\(gateCount) gates (kubelet, daemonsets, deployments), "
                + "period \(Self.period) = the rollout pollInterval; expected ≈ period/2 on average, ≤ period + one round at worst")
    }
}

