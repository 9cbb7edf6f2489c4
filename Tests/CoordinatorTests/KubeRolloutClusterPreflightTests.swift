import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Testing

/// `KubeRolloutCluster.drainBlockers` against the fake API over TLS: the rules first, then a dry-run eviction for
/// each pod under one budget, whose refusal is reported as the API's.
extension KubeRolloutClusterTests {
    @Test("drainBlockers: a budget at zero shows only through the API's dry run; the rules' blockers are not asked about again")
    func drainBlockersAskTheAPI() async throws {
        try await withCluster { state, cluster in
            // minAvailable 2 of 3 with one replica unready: desiredHealthy 2 < expectedPods 3 (the rules pass it), but
            // currentHealthy 2 leaves disruptionsAllowed 0.
            state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            state.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            state.addPod(name: "web-3", node: "n3", labels: ["app": "web"], ready: false)
            state.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(2))
            state.addPod(name: "solo", node: "n1", owner: nil)
            state.addPod(name: "free-1", node: "n2", labels: ["app": "free"])
            let before = state.stats.byRoute
            let found = try await cluster.drainBlockers(nodes: ["n1", "n2"])
            try #require(found.map(\.pod) == ["default/solo", "default/web-1", "default/web-2"], "\(found)")
            #expect(found.map(\.source) == [.rules, .apiDryRun, .apiDryRun])
            #expect(found[1].node == "n1" && found[2].node == "n2")
            #expect(found[1].reason.contains("PodDisruptionBudget default/web-pdb allows no disruption now (HTTP 429"), "\(found[1].reason)")
            let evictions = state.stats.byRoute.filter { $0.key.contains("eviction") }.values.reduce(0, +)
                - before.filter { $0.key.contains("eviction") }.values.reduce(0, +)
            #expect(evictions == 2, "one dry run per pod under a budget: \(state.stats.byRoute)")
            let podLists = (state.stats.byRoute["GET pods (list)"] ?? 0) - (before["GET pods (list)"] ?? 0)
            #expect(podLists == 1, "one list of every pod for both nodes: \(state.stats.byRoute)")
            #expect(state.stats.evictions == 0 && state.pod(name: "web-1") != nil && state.pod(name: "web-2") != nil)

            // Healthy again: the API lets both go, and only the rules' blocker is left.
            state.delete(.pods, namespace: "default", name: "web-3")
            state.addPod(name: "web-3", node: "n3", labels: ["app": "web"])
            #expect(try await cluster.drainBlockers(nodes: ["n1", "n2"]).map(\.pod) == ["default/solo"])
        }
    }
}
