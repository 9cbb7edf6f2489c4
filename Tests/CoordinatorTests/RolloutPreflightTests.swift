import Foundation
import NK3Coordinator
import NK3Kube
import NK3Protocol
import Testing

/// Drain blockers found before the first node: refused up front (exit 2) for nodes that would be drained.
@Suite struct RolloutPreflightTests {
    let blocker = DrainBlocker(node: "n2", pod: "default/solo-0", reason: "no controller manages it")

    @Test("a blocker on a node to be drained refuses the rollout before anything, naming node, pod and reason")
    func refused() {
        var m = RolloutMachine(plan: RT.applyPlan(agents: ["n1", "n2"]))
        var s = RT.start(["n1", "n2"])
        s.drainBlockers = [blocker]
        let a = m.start(s)
        #expect(a.failure?.kind == .invalidInput && a.failure?.exitCode == 2)
        #expect(a.failure?.message.contains("n2: default/solo-0: no controller manages it") == true, "\(a.failure?.message ?? "")")
        #expect(a.work == [.abort(a.failure!)])
        #expect(a.saved.isEmpty)
    }

    @Test("blockers on nodes that will not be drained (unchanged, or a switch rollout) do not count")
    func ignoredWhereNoDrain() {
        var m = RolloutMachine(plan: RT.applyPlan(agents: ["n1", "n2"]))
        var s = RT.start(["n1", "n2"]) { $0 == "n2" ? RT.status($0, files: RT.files("new")) : RT.status($0) }
        s.drainBlockers = [blocker]
        #expect(m.start(s).failure == nil)
        var sw = RolloutMachine(plan: RT.applyPlan(agents: ["n1", "n2"], bundle: RT.bundle(action: .switch)))
        var s2 = RT.start(["n1", "n2"])
        s2.drainBlockers = [blocker]
        #expect(sw.start(s2).failure == nil)
    }

    @Test("the rules: an unreplicated pod, a budget that wants every pod, two budgets; DaemonSet pods and a budget that allows one are fine")
    func rules() throws {
        func pod(_ name: String, labels: [String: String], owner: String?) throws -> Pod {
            let ownerJSON = owner.map { #","ownerReferences":[{"apiVersion":"apps/v1","kind":"\#($0)","name":"x","uid":"u","controller":true}]"# } ?? ""
            return try GateFixtures.decode(#"""
                {"metadata":{"name":"\#(name)","namespace":"default","labels":\#(String(decoding: try JSONEncoder().encode(labels), as: UTF8.self))\#(ownerJSON)},
                 "spec":{"nodeName":"n1","containers":[{"name":"c","image":"i"}]},"status":{"phase":"Running"}}
                """#)
        }
        func pdb(_ name: String, app: String, desired: Int, expected: Int) throws -> PodDisruptionBudget {
            try GateFixtures.decode(#"""
                {"metadata":{"name":"\#(name)","namespace":"default"},"spec":{"minAvailable":\#(desired),"selector":{"matchLabels":{"app":"\#(app)"}}},
                 "status":{"disruptionsAllowed":\#(max(0, expected - desired)),"currentHealthy":\#(expected),"desiredHealthy":\#(desired),"expectedPods":\#(expected)}}
                """#)
        }
        let pods = [
            try pod("solo", labels: ["app": "solo"], owner: nil),
            try pod("db-0", labels: ["app": "db"], owner: "StatefulSet"),
            try pod("web-1", labels: ["app": "web"], owner: "ReplicaSet"),
            try pod("both-1", labels: ["app": "both"], owner: "ReplicaSet"),
            try pod("exporter", labels: ["app": "db"], owner: "DaemonSet"),
        ]
        let budgets = [
            try pdb("db", app: "db", desired: 1, expected: 1), try pdb("web", app: "web", desired: 2, expected: 3),
            try pdb("b1", app: "both", desired: 1, expected: 3), try pdb("b2", app: "both", desired: 1, expected: 3),
        ]
        let found = DrainPreflight.blockers(node: "n1", pods: pods, budgets: budgets)
        #expect(found.map(\.pod) == ["default/solo", "default/db-0", "default/both-1"])
        #expect(found[1].reason.contains("PodDisruptionBudget default/db wants all 1 of its pods healthy"))
        #expect(found[2].reason.contains("default/b1, default/b2"))
    }
}
