import Foundation
import Logging
import NK3Coordinator
import NK3Protocol
import Testing

/// A fake cluster, a virtual clock, an executor and a transcript.
struct ExecutorRig {
    let clock = RolloutTestClock()
    let world: RolloutFakeWorld
    let sink = CollectingEventSink()
    let servers: [String]
    let agents: [String]

    init(servers: [String] = [], agents: [String] = []) {
        self.servers = servers
        self.agents = agents
        world = RolloutFakeWorld(clock: clock, servers: servers, agents: agents)
    }

    static let timeouts = RolloutTimeouts(
        agentCall: .seconds(30), rebuild: .seconds(3600), drain: .seconds(60), reboot: .seconds(30), ready: .seconds(30),
        gates: .seconds(30))

    func executor(holder: String = "tester@host/1", timeouts: RolloutTimeouts = ExecutorRig.timeouts, ttl: Duration = .seconds(60))
        -> RolloutExecutor<RolloutTestClock>
    {
        let clock = self.clock
        return RolloutExecutor(
            agents: FakeAgents(world: world), cluster: FakeCluster(world: world, clock: clock),
            configuration: .init(holder: holder, leaseTTL: ttl, pollInterval: .milliseconds(100), timeouts: timeouts),
            clock: clock, now: { clock.date }, sink: sink, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    func plan(_ bundle: ApplyBundle = RT.bundle(), options: RolloutPlan.Options = .init()) -> RolloutPlan {
        RT.applyPlan(servers: servers, agents: agents, bundle: bundle, options: options)
    }

    func run(_ plan: RolloutPlan, holder: String = "tester@host/1") async -> Result<RolloutSummary, any Error> {
        do { return .success(try await executor(holder: holder).run(plan)) } catch { return .failure(error) }
    }

    /// Every node runs the new files, committed, nothing cordoned, no lease, no progress.
    func expectConverged(_ files: [String: String] = RT.files("new"), sourceLocation: SourceLocation = #_sourceLocation) async {
        for name in servers + agents {
            let n = await world.node(name)
            #expect(n.files == files, "\(name) files", sourceLocation: sourceLocation)
            #expect(n.operation == nil, "\(name) has an open operation", sourceLocation: sourceLocation)
            #expect(n.cordonedByNK3 == nil, "\(name) left cordoned", sourceLocation: sourceLocation)
            #expect(!n.down, sourceLocation: sourceLocation)
        }
        #expect(await world.lease == nil, sourceLocation: sourceLocation)
        #expect(await world.progress == nil, sourceLocation: sourceLocation)
    }
}

func failure(_ r: Result<RolloutSummary, any Error>) -> RolloutFailure? {
    if case .failure(let e) = r { return e as? RolloutFailure }
    return nil
}

@Suite struct RolloutExecutorTests {
    @Test func threeServersRollOneAtATimeWithTheSeedsLines() async throws {
        let rig = ExecutorRig(servers: ["s1", "s2", "s3"])
        let summary = try await rig.executor().run(rig.plan(RT.bundle(upgrade: true)))
        #expect(summary.updated == ["s1", "s2", "s3"])
        await rig.expectConverged()
        #expect(await rig.world.maxServersDisrupted == 1)
        #expect(await rig.world.gatesWhileDisrupted == 0)
        for s in ["s1", "s2", "s3"] { #expect(await rig.world.node(s).confirmed == [1]) }
        let lines = rig.sink.messages
        let s2 = [
            "Rebuilding NixOS on s2", "Draining s2", "Rebooting s2", "s2 is reachable", "kubelet is ready on s2",
            "s2 uncordoned", "1 daemonsets healthy in namespace default", "ceph state is HEALTH_OK",
            "Confirmed apply 1 on s2: its agent keeps the new generation", "Kernel upgraded from 6.6.45 to 6.6.46 on s2",
        ]
        let start = try #require(lines.firstIndex(of: "Rebuilding NixOS on s2"))
        #expect(Array(lines[start..<(start + s2.count)]) == s2)
        #expect(Array(lines.prefix(4)).dropFirst() == ["s1 is reachable", "s2 is reachable", "s3 is reachable"])
        // Timestamps come from the (virtual) wall clock and never go back.
        let times = rig.sink.events.map(\.timestamp)
        #expect(times == times.sorted())
    }

    @Test func switchRolloutNeverCordons() async throws {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        _ = try await rig.executor().run(rig.plan(RT.bundle(action: .switch)))
        #expect(!(await rig.world.calls).contains { $0.hasPrefix("cordon") || $0.hasPrefix("submit reboot") })
        #expect(await rig.world.node("a1").confirmed == [1])
    }

    @Test func unchangedSystemSaysNoUpgradeNeeded() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.systemUnchanged = true }
        let s = try await rig.executor().run(rig.plan(RT.bundle("old", upgrade: true)))
        #expect(s.unchanged == ["a1"])
        #expect(rig.sink.messages.contains("No upgrade needed on a1"))
        #expect(!(await rig.world.calls).contains("cordon a1"))
    }

    @Test func rebuildFailureExits4WithoutDraining() async {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.update("a1") { $0.rebuildFails = "error: unable to download 'https://nixos.org/channels/woofwoof': HTTP error 404" }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.exitCode == 4)
        #expect(f?.message.contains("woofwoof") == true)
        let calls = await rig.world.calls
        #expect(!calls.contains { $0.hasPrefix("cordon") })
        #expect(!calls.contains("submit apply a2"))
        #expect(await rig.world.node("a1").files == RT.files("old"))
        #expect(rig.sink.events.last?.status == .failed)
        #expect(await rig.world.lease == nil)
    }

    @Test func kubeletNeverReadyAbortsNodeStaysCordonedAndUnconfirmed() async {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.update("a1") { $0.neverReadyAfterReboot = true }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .timeout)
        #expect(f?.exitCode == 5)
        #expect(f?.node == "a1" && f?.step == .waitReady)
        #expect(f?.message.contains("kubelet did not become Ready within 30s") == true)
        let a1 = await rig.world.node("a1")
        #expect(a1.cordonedByNK3 != nil)
        #expect(a1.confirmed.isEmpty)
        #expect(a1.operation?.phase == .awaitingConfirm)  // its agent's deadline will roll it back
        #expect(!(await rig.world.calls).contains("submit apply a2"))
        #expect(await rig.world.progress?.inFlight["a1"]?.step == .waitReady)
        #expect(await rig.world.lease == nil)
    }

    @Test func rebootThatKeepsTheOldBootIDFailsAfterTheTimeout() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.update("a1") { $0.rebootIgnored = true }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .timeout)
        #expect(f?.step == .waitReachable)
        #expect(f?.message.contains("old boot id for 30s") == true)
        // It kept asking (about 30s / 100ms times), and never went on to Ready.
        let polls = (await rig.world.calls).filter { $0 == "status a1" }.count
        #expect(polls > 100)
        #expect(!(await rig.world.calls).contains("ready? a1"))
    }

    @Test func gatesRecoveringThenHealthyContinue() async throws {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.setGates([.healthy, .recovering(polls: 3), .recovering(polls: 1)])
        let s = try await rig.executor().run(rig.plan())
        #expect(s.updated == ["a1", "a2"])
        let lines = rig.sink.messages
        #expect(lines.filter { $0 == "1 daemonsets recovering in namespace default" }.count == 4)
        let firstRecovering = try #require(lines.firstIndex(of: "1 daemonsets recovering in namespace default"))
        #expect(lines[firstRecovering...].contains("1 daemonsets healthy in namespace default"))
        #expect(rig.sink.events.filter { $0.status == .waiting }.allSatisfy { $0.phase == .gates })
        await rig.expectConverged()
    }

    @Test func gatesNeverHealthyAbortWithoutConfirm() async {
        let rig = ExecutorRig(agents: ["a1"])
        await rig.world.setGates([.healthy, .neverHealthy])
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.kind == .timeout)
        #expect(f?.step == .gates)
        #expect(f?.message.contains("HEALTH_WARN") == true)
        #expect(await rig.world.node("a1").confirmed.isEmpty)
    }

    @Test func unreachableAgentAtStartExits3TouchingNothing() async {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.update("a2") { $0.down = true; $0.downPolls = 1_000; $0.downPollsLeft = 1_000 }
        let f = failure(await rig.run(rig.plan()))
        #expect(f?.exitCode == 3)
        #expect(f?.message.contains("a2") == true)
        #expect(!(await rig.world.calls).contains { $0.hasPrefix("submit") || $0.hasPrefix("cordon") })
    }

    @Test func invalidPlanExits2BeforeTakingTheLease() async {
        let rig = ExecutorRig(agents: ["a1"])
        let f = failure(await rig.run(rig.plan(options: .init(disruptionBudget: 0))))
        #expect(f?.exitCode == 2)
        #expect(await rig.world.calls.isEmpty)
    }

    @Test func budgetTwoRollsTwoAgentsTogetherButServersAlone() async throws {
        let rig = ExecutorRig(servers: ["s1", "s2", "s3"], agents: ["a1", "a2", "a3", "a4"])
        let s = try await rig.executor().run(rig.plan(options: .init(disruptionBudget: 2)))
        #expect(Set(s.updated) == Set(["s1", "s2", "s3", "a1", "a2", "a3", "a4"]))
        #expect(await rig.world.maxDisrupted == 2)
        #expect(await rig.world.maxServersDisrupted == 1)
        #expect(await rig.world.gatesWhileDisrupted == 0)
        await rig.expectConverged()
    }
}

/// Cancels a task from inside a fake's call hook, even if the hook fires before the task handle is stored.
final class KillSwitch: @unchecked Sendable {
    // @unchecked: state guarded by `lock`.
    private let lock = NSLock()
    private var task: Task<Result<RolloutSummary, any Error>, Never>?
    private var requested = false
    private var count = 0
    let at: Int
    init(at: Int) { self.at = at }

    func set(_ t: Task<Result<RolloutSummary, any Error>, Never>) {
        lock.lock()
        task = t
        let cancelNow = requested
        lock.unlock()
        if cancelNow { t.cancel() }
    }

    func call() {
        lock.lock()
        count += 1
        let hit = count == at
        if hit { requested = true }
        let t = task
        lock.unlock()
        if hit { t?.cancel() }
    }
}

/// A coordinator killed at any rollout phase and rerun leaves no node cordoned (docs/RELIABILITY.md, faults).
@Suite struct RolloutKillResumeTests {
    /// Total calls a clean run of this setup makes (so every call index is a kill point).
    static func callsInACleanRun() async -> Int {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        _ = await rig.run(rig.plan())
        return await rig.world.calls.count
    }

    @Test func killedAtEveryCallThenRerunFinishesWithNothingCordoned() async throws {
        let total = await Self.callsInACleanRun()
        #expect(total > 40)
        for k in 1...total {
            let rig = ExecutorRig(agents: ["a1", "a2"])
            let kill = KillSwitch(at: k)
            await rig.world.setHook { _, _ in kill.call() }
            let plan = rig.plan()
            let executor = rig.executor(holder: "first")
            let task = Task { () -> Result<RolloutSummary, any Error> in
                do { return .success(try await executor.run(plan)) } catch { return .failure(error) }
            }
            kill.set(task)
            let first = await task.value
            if case .failure(let e) = first {
                #expect(e is CancellationError, "kill at call \(k): \(e)")
            }
            let killedAt = await rig.world.calls.last ?? "-"
            await rig.world.setHook(nil)
            let second = await rig.run(plan, holder: "second")
            if case .failure(let e) = second {
                Issue.record("rerun after kill at call \(k) (\(killedAt)) failed: \(e)")
                continue
            }
            await rig.expectConverged()
            for n in ["a1", "a2"] {
                let node = await rig.world.node(n)
                #expect(node.lastResult?.outcome == .committed, "kill at \(k) (\(killedAt)): \(n) \(String(describing: node.lastResult))")
            }
            #expect(await rig.world.gatesWhileDisrupted == 0, "kill at \(k) (\(killedAt))")
        }
    }

    @Test func abortedRolloutIsRecoveredByTheNextRun() async throws {
        let rig = ExecutorRig(agents: ["a1", "a2"])
        await rig.world.update("a1") { $0.neverReadyAfterReboot = true }
        #expect(failure(await rig.run(rig.plan()))?.exitCode == 5)
        #expect(await rig.world.node("a1").cordonedByNK3 != nil)
        // The operator fixes the node; the rerun brings it back (Ready → uncordon → gates) and finishes.
        await rig.world.update("a1") { $0.neverReadyAfterReboot = false }
        _ = try await rig.executor().run(rig.plan())
        await rig.expectConverged()
        let lines = rig.sink.messages
        let resumed = try #require(lines.lastIndex { $0.contains("Resuming a1") || $0.contains("a1 was left cordoned") })
        #expect(lines[resumed...].contains("a1 uncordoned"))
    }
}
