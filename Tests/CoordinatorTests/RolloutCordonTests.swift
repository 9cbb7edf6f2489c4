import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// A node someone else cordoned is theirs: skipped (and named at the end) unless included explicitly.
@Suite struct RolloutCordonTests {
    func start(_ names: [String], others: [String: String]) -> RolloutMachine.Start {
        var s = RT.start(names)
        s.cordonedByOthers = others
        return s
    }

    @Test("a node a person cordoned is skipped with a line, named again at the end, and never touched")
    func skipped() throws {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1", "n2", "n3"]))
        sim.run(start(["n1", "n2", "n3"], others: ["n2": "kubectl"]))
        let summary = try #require(sim.summary)
        #expect(summary.updated == ["n1", "n3"])
        #expect(summary.skippedCordoned == ["n2"])
        #expect(!sim.trace.contains { $0.node == "n2" })
        #expect(sim.messages.contains { $0.hasPrefix("n2 is cordoned by someone else (kubectl), not by nk3: skipping it") })
        #expect(sim.messages.suffix(2).first?.hasPrefix("Skipped 1 node(s) cordoned by someone else: n2") == true, "\(sim.messages)")
    }

    @Test("--include-cordoned rolls it like any other node")
    func included() throws {
        var plan = RT.applyPlan(agents: ["n1", "n2"])
        plan.options.includeCordoned = true
        var sim = MachineSim(plan: plan)
        sim.run(start(["n1", "n2"], others: ["n2": ""]))
        #expect(sim.summary?.updated == ["n1", "n2"])
        #expect(sim.summary?.skippedCordoned.isEmpty == true)
        #expect(sim.trace.contains(.drain(node: "n2")))
    }
}
