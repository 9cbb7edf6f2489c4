import Foundation
import NK3Coordinator
import NK3Kube
import NK3Protocol
import Testing

/// After a reboot: Ready must come from the new boot, and a node that went down and stayed down is "did not
/// come back" — the rules of `RolloutMachine` and `GateLogic.readiness`, without I/O.
@Suite struct RolloutRebootProofTests {
    static let t = RT.t0

    static func node(ready: String = "True", bootID: String?, heartbeat: Date = t) -> Node {
        Node(
            metadata: ObjectMeta(name: "n1"), spec: NodeSpec(),
            status: NodeStatus(
                conditions: [
                    KubeCondition(
                        type: "Ready", status: ready, reason: ready == "True" ? "KubeletReady" : "NodeStatusUnknown",
                        lastHeartbeatTime: KubeTime.format(heartbeat))
                ],
                nodeInfo: NodeSystemInfo(bootID: bootID)))
    }

    @Test("Ready counts for the new boot only when the API shows its boot id")
    func readyNeedsTheNewBootID() {
        let boot = NodeBoot(bootID: "B-new", since: Self.t)
        #expect(GateLogic.readiness(of: Self.node(bootID: "b-new\n"), boot: boot) == .ready)
        #expect(GateLogic.readiness(of: Self.node(bootID: "b-old"), boot: boot) == .previousBoot(apiBootID: "b-old"))
        #expect(GateLogic.readiness(of: Self.node(bootID: "b-old"), boot: nil) == .ready, "no reboot: any Ready counts")
        #expect(GateLogic.readiness(of: Self.node(ready: "Unknown", bootID: "b-new"), boot: boot) == .notReady("Unknown/NodeStatusUnknown"))
    }

    @Test("without a boot id in the API, only a heartbeat after the node came back counts")
    func heartbeatFallback() {
        let boot = NodeBoot(bootID: "b-new", since: Self.t.addingTimeInterval(0.4))
        #expect(GateLogic.readiness(of: Self.node(bootID: nil, heartbeat: Self.t), boot: boot) == .previousBoot(apiBootID: nil))
        #expect(GateLogic.readiness(of: Self.node(bootID: "", heartbeat: Self.t.addingTimeInterval(1)), boot: boot) == .ready)
    }

    @Test("an agent that answers once with its old boot id, then goes down for good, did not come back (exit 3)")
    func oldAnswerThenDownIsUnreachable() throws {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1"]))
        var looks = 0
        sim.override = { action, sim in
            switch action {
            case .reboot(let n): return .rebootIssued(node: n)  // the boot id changes only if it comes back
            case .waitReachable(let n, _, let sawOld):
                looks += 1
                if looks == 1 { return .agentReachable(node: n, status: sim.status(n), at: RT.t0) }
                if sawOld { return .agentWentDown(node: n) }
                return .timedOut(node: n, step: .waitReachable, after: .seconds(900))
            default: return nil
            }
        }
        sim.run(RT.start(["n1"]))
        let f = try #require(sim.failure)
        #expect(f.kind == .unreachable && f.exitCode == 3)
        #expect(f.message.contains("did not come back within 15m"), "\(f.message)")
        #expect(!f.message.contains("the reboot did not happen"))
        #expect(looks == 3)
    }

    @Test("an agent that keeps answering with its old boot id until the timeout: the reboot did not happen (exit 5)")
    func oldAnswersUntilTheEndAreATimeout() throws {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1"]))
        var looks = 0
        sim.override = { action, sim in
            switch action {
            case .reboot(let n): return .rebootIssued(node: n)
            case .waitReachable(let n, _, _):
                looks += 1
                if looks < 4 { return .agentReachable(node: n, status: sim.status(n), at: RT.t0) }
                return .timedOut(node: n, step: .waitReachable, after: .seconds(900))
            default: return nil
            }
        }
        sim.run(RT.start(["n1"]))
        #expect(sim.failure?.kind == .timeout)
        #expect(sim.failure?.message.contains("the reboot did not happen") == true)
    }
}
