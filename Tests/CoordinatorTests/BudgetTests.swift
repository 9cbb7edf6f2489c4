import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// Disruption budget and etcd quorum, checked on the pure machine over many interleavings.
@Suite struct BudgetTests {
    static let seeds: [UInt64] = Array(1...40)

    @Test(arguments: seeds) func budgetTwoWithThreeServersNeverTakesTwoServersDown(seed: UInt64) {
        // https://docs.k3s.io/datastore/ha-embedded: three servers survive one down, so ⌊(3−1)/2⌋ = 1 at a time.
        let plan = RT.applyPlan(servers: ["s1", "s2", "s3"], options: .init(disruptionBudget: 2))
        #expect(plan.maxServersDown == 1)
        var sim = MachineSim(plan: plan, seed: seed)
        sim.run(RT.start(["s1", "s2", "s3"]))
        #expect(sim.summary?.updated.sorted() == ["s1", "s2", "s3"])
        #expect(sim.maxServersDisrupted == 1)
        #expect(sim.maxServersInFlight == 1)
        #expect(sim.gatesWhileDisrupted == 0)
        #expect(sim.startsWhileUnverified == 0)
    }

    @Test(arguments: seeds) func mixedClusterRespectsBudgetQuorumAndGates(seed: UInt64) {
        let plan = RT.applyPlan(servers: ["s1", "s2", "s3", "s4", "s5"], agents: ["a1", "a2", "a3", "a4"], options: .init(disruptionBudget: 3))
        #expect(plan.maxServersDown == 2)
        var sim = MachineSim(plan: plan, seed: seed)
        sim.run(RT.start(plan.nodes.map(\.name)))
        #expect(sim.summary?.updated.count == 9)
        #expect(sim.maxInFlight <= 3)
        #expect(sim.maxInFlight >= 2)  // the budget is actually used
        #expect(sim.maxServersInFlight <= 2)
        #expect(sim.maxServersDisrupted <= 2)
        #expect(sim.gatesWhileDisrupted == 0)
        // Agents (non-servers) start before any server.
        let starts = sim.events.filter { $0.hasPrefix("start ") }.map { String($0.dropFirst(6)) }
        #expect(Array(starts.prefix(4)).sorted() == ["a1", "a2", "a3", "a4"])
        // A gate run comes first, and no node starts while another was disrupted since the last gate run.
        #expect(sim.events.first == "gates")
        #expect(sim.startsWhileUnverified == 0)
    }

    @Test func budgetOneIsStrictlySequentialWithGatesBetweenNodes() {
        let plan = RT.applyPlan(agents: ["a1", "a2", "a3"])
        var sim = MachineSim(plan: plan, seed: 7)
        sim.run(RT.start(["a1", "a2", "a3"]))
        #expect(sim.maxInFlight == 1)
        #expect(sim.events == ["gates", "start a1", "gates", "start a2", "gates", "start a3", "gates"])
    }

    @Test func budgetTwoStartsTwoNodesOnlyAfterHealthyGates() {
        let plan = RT.applyPlan(agents: ["a1", "a2", "a3", "a4"], options: .init(disruptionBudget: 2))
        var sim = MachineSim(plan: plan)
        sim.run(RT.start(plan.nodes.map(\.name)))
        #expect(sim.summary?.updated.count == 4)
        #expect(Array(sim.events.prefix(3)) == ["gates", "start a1", "start a2"])
        // No new node starts between a disruption and the next passing gate run.
        #expect(sim.startsWhileUnverified == 0)
        #expect(sim.maxDisrupted == 2)
    }

    @Test func fiveServersBudgetThreeTakesAtMostTwoServers() {
        let plan = RT.applyPlan(servers: ["s1", "s2", "s3", "s4", "s5"], options: .init(disruptionBudget: 3))
        for seed in Self.seeds {
            var sim = MachineSim(plan: plan, seed: seed)
            sim.run(RT.start(plan.nodes.map(\.name)))
            #expect(sim.summary != nil)
            #expect(sim.maxServersInFlight == 2, "seed \(seed)")
        }
    }

    @Test(arguments: seeds) func aRefusedStartStopsBetweenNodesOnceTheNodesInFlightFinished(seed: UInt64) {
        // Budget 2: a1 and a2 start together; the window closes before any further node starts (--no-wait).
        for action in [RebuildAction.boot, .switch] {
            let plan = RT.applyPlan(agents: ["a1", "a2", "a3", "a4", "a5"], bundle: RT.bundle(action: action), options: .init(disruptionBudget: 2))
            let stop = RolloutFailure(kind: .outsideWindow, node: nil, cause: "outside the maintenance window", message: "stopped: outside the window")
            var sim = MachineSim(plan: plan, seed: seed)
            sim.override = { a, _ in
                if case .sendBundle(let n, _) = a, !["a1", "a2"].contains(n) { return .startRefused(node: n, failure: stop) }
                return nil
            }
            sim.run(RT.start(plan.nodes.map(\.name)))
            #expect(sim.failure == stop, "\(action) seed \(seed)")
            #expect(sim.messages.last == "stopped: outside the window")
            // Both nodes in flight went all the way to their confirm; no other node took a step past its refused start.
            let confirmed = sim.trace.compactMap { if case .confirm(let n, _) = $0 { return n } else { return nil } }
            #expect(confirmed.sorted() == ["a1", "a2"])
            let beyond = sim.trace.work.filter { a in
                guard let n = a.node, !["a1", "a2"].contains(n) else { return false }
                if case .sendBundle = a { return false }
                return true
            }
            #expect(beyond.isEmpty, "\(beyond)")
            // What a rerun finds: a1 and a2 done, nothing in flight.
            #expect(sim.saves.last.map { Set($0.done.keys) } == ["a1", "a2"] && sim.saves.last?.inFlight.isEmpty == true)
            #expect(sim.gatesWhileDisrupted == 0 && sim.maxInFlight <= 2)
        }
    }
}
