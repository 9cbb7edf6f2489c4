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

    @Test("a refusal from the API's dry-run eviction refuses a fresh rollout, saying where it came from")
    func apiRefusalRefusesAFreshStart() {
        let api = DrainBlocker(
            node: "n2", pod: "default/web-1", reason: "the API server refuses its eviction (dry-run eviction): x",
            source: .apiDryRun)
        var m = RolloutMachine(plan: RT.applyPlan(agents: ["n1", "n2"]))
        var s = RT.start(["n1", "n2"])
        s.drainBlockers = [api]
        let a = m.start(s)
        #expect(a.failure?.exitCode == 2)
        #expect(a.failure?.message.contains("n2: default/web-1: the API server refuses its eviction (dry-run eviction): x") == true)
        #expect(a.failure?.message.contains("rerun once the budget's pods are healthy again") == true, "\(a.failure?.message ?? "")")
        #expect(a.work == [.abort(a.failure!)])
    }

    @Test("while a resumed node is in flight the API's refusals wait for the drain (its evicted pods hold the budget); the rules still refuse")
    func apiRefusalIgnoredOnResume() {
        let plan = RT.applyPlan(agents: ["n1", "n2"])
        let progress = RolloutProgress(planFingerprint: plan.fingerprint, done: [:], inFlight: ["n1": .init(step: .drain, applySerial: 5)])
        let op = OperationStatus(id: "op-n1", serial: 5, kind: "apply", action: .boot, phase: .awaitingConfirm, startedAt: RT.t0, bootIDAtRebuild: "n1-boot-1")
        func start(_ blockers: [DrainBlocker]) -> RolloutMachine.Start {
            var s = RT.start(["n1", "n2"], cordoned: ["n1": "nk3 rollout"], progress: progress) {
                $0 == "n1" ? RT.status($0, files: RT.files("new"), operation: op) : RT.status($0)
            }
            s.drainBlockers = blockers
            return s
        }
        let api = DrainBlocker(node: "n2", pod: "default/web-1", reason: "dry run said no", source: .apiDryRun)
        var resumed = RolloutMachine(plan: plan)
        let a = resumed.start(start([api]))
        #expect(a.failure == nil)
        #expect(a.work == [.drain(node: "n1")])
        var withRule = RolloutMachine(plan: plan)
        #expect(withRule.start(start([api, blocker])).failure?.exitCode == 2)
    }

    @Test("dry-run candidates: evictable Running pods under exactly one budget, not already blocked")
    func dryRunCandidates() throws {
        func pod(_ name: String, app: String, phase: String = "Running", owner: String? = "ReplicaSet", deleting: Bool = false) throws -> Pod {
            let ownerJSON = owner.map { #","ownerReferences":[{"apiVersion":"apps/v1","kind":"\#($0)","name":"x","uid":"u","controller":true}]"# } ?? ""
            let deletion = deleting ? #","deletionTimestamp":"2024-05-01T12:00:00Z""# : ""
            return try GateFixtures.decode(#"""
                {"metadata":{"name":"\#(name)","namespace":"default","labels":{"app":"\#(app)"}\#(ownerJSON)\#(deletion)},
                 "spec":{"nodeName":"n1","containers":[{"name":"c","image":"i"}]},"status":{"phase":"\#(phase)"}}
                """#)
        }
        func pdb(_ name: String, app: String) throws -> PodDisruptionBudget {
            try GateFixtures.decode(#"""
                {"metadata":{"name":"\#(name)","namespace":"default"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"\#(app)"}}},
                 "status":{"disruptionsAllowed":0,"currentHealthy":1,"desiredHealthy":1,"expectedPods":2}}
                """#)
        }
        let pods = [
            try pod("web-1", app: "web"), try pod("free-1", app: "free"), try pod("pending-1", app: "web", phase: "Pending"),
            try pod("gone-1", app: "web", deleting: true), try pod("ds-1", app: "web", owner: "DaemonSet"),
            try pod("solo", app: "web", owner: nil), try pod("both-1", app: "both"), try pod("listed-1", app: "web"),
        ]
        let budgets = [try pdb("web", app: "web"), try pdb("b1", app: "both"), try pdb("b2", app: "both")]
        let blocked = DrainPreflight.blockers(node: "n1", pods: pods, budgets: budgets)
            + [DrainBlocker(node: "n1", pod: "default/listed-1", reason: "x")]
        let asked = DrainPreflight.dryRunCandidates(pods: pods, budgets: budgets, blocked: blocked)
        #expect(asked.map(\.name) == ["web-1"])
    }

    @Test("dry-run answers: a budget's 429 and a 403 or 500 are blockers from the API; what a drain rides out is not")
    func apiBlockers() throws {
        let pod: Pod = try GateFixtures.decode(#"{"metadata":{"name":"web-1","namespace":"default"},"status":{"phase":"Running"}}"#)
        let held = DrainPreflight.apiBlocker(
            node: "n1", pod: pod, answer: .refusedByBudget(budget: "web", detail: "The disruption budget web needs 2 healthy pods and has 2 currently"))
        #expect(held?.source == .apiDryRun)
        #expect(
            held?.reason == "the API server refuses its eviction (dry-run eviction): PodDisruptionBudget default/web allows no "
                + "disruption now (HTTP 429: The disruption budget web needs 2 healthy pods and has 2 currently)")
        let forbidden = DrainPreflight.apiBlocker(node: "n1", pod: pod, answer: .refused(httpStatus: 403, message: "no evictions here"))
        #expect(forbidden?.reason.hasSuffix("HTTP 403: no evictions here") == true)
        for fine in [EvictionDryRun.allowed, .gone, .namespaceTerminating, .budgetNotObservedYet] {
            #expect(DrainPreflight.apiBlocker(node: "n1", pod: pod, answer: fine) == nil, "\(fine)")
        }
    }
}
