import Foundation
import Logging
import NK3Coordinator
import NK3Protocol
import Synchronization
import Testing

/// The maintenance window and the alert gate at the executor's start-of-node point, on the virtual clock.
@Suite("Start hold: maintenance window and alert gate", .serialized, .timeLimit(.minutes(2)))
struct StartHoldTests {
    static let utc = TimeZone(identifier: "UTC")!
    /// 22:00–04:00 UTC, every day.
    static let night = MaintenanceWindow(start: 22 * 60, end: 4 * 60, timeZone: utc, zoneName: "UTC")
    static let timeouts = RolloutTimeouts(
        agentCall: .seconds(30), rebuild: .seconds(3600), drain: .seconds(3600), reboot: .seconds(3600),
        ready: .seconds(3600), gates: .seconds(3600))

    static func executor(_ rig: ExecutorRig, policy: NodeStartPolicy) -> RolloutExecutor<RolloutTestClock> {
        let clock = rig.clock
        return RolloutExecutor(
            agents: FakeAgents(world: rig.world), cluster: FakeCluster(world: rig.world, clock: clock),
            configuration: .init(
                holder: "tester@host/1", leaseTTL: .seconds(600), pollInterval: .milliseconds(100), timeouts: timeouts,
                startPolicy: policy),
            clock: clock, now: { clock.date }, sink: rig.sink, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// Waits (real time, with a deadline) until the sink has a message containing `text`.
    static func waitForMessage(_ rig: ExecutorRig, _ text: String, within: Duration = .seconds(30)) async -> Bool {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < within {
            if rig.sink.messages.contains(where: { $0.contains(text) }) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    @Test func noWaitStopsBeforeTheFirstNodeOutsideTheWindowAndARerunInsideResumes() async throws {
        // RT.t0 is 2024-05-01 12:00 UTC: outside 22:00–04:00.
        let rig = ExecutorRig(agents: ["a1", "a2"])
        let stopped: RolloutFailure? = await {
            do {
                _ = try await Self.executor(rig, policy: NodeStartPolicy(window: Self.night, noWait: true)).run(rig.plan())
                return nil
            } catch { return error as? RolloutFailure }
        }()
        #expect(stopped?.kind == .outsideWindow)
        #expect(stopped?.exitCode == 9)
        #expect(stopped?.message.contains("it opens at 2024-05-01T22:00:00.000Z") == true, "\(String(describing: stopped))")
        let calls = await rig.world.calls
        #expect(!calls.contains { $0.hasPrefix("submit") || $0.hasPrefix("drain") || $0.hasPrefix("cordon") }, "\(calls)")
        #expect(await rig.world.lease == nil, "the lease is released")

        // Ten hours later the window is open: the same command resumes and finishes.
        rig.clock.advance(by: .seconds(10 * 3600))
        _ = try await Self.executor(rig, policy: NodeStartPolicy(window: Self.night, noWait: true)).run(rig.plan())
        await rig.expectConverged()
    }

    @Test func noWaitWithTwoNodesInFlightLetsBothFinishThenStopsBetweenNodes() async throws {
        // Budget 2, four agents, 03:50 UTC: inside 22:00–04:00. a1 and a2 start together.
        let rig = ExecutorRig(agents: ["a1", "a2", "a3", "a4"])
        rig.clock.advance(by: .seconds(15 * 3600 + 50 * 60))
        // a2 rebuilds until the test lets it finish: it is still in flight, mid-sequence, when a1 is done.
        await rig.world.update("a2") { $0.rebuildPolls = .max }
        // The window closes (04:05) when a1 drains: both nodes are in flight.
        let clock = rig.clock
        let closedWhileInFlight = Mutex<[String]?>(nil)
        await rig.world.setHook { world, call in
            guard call == "drain a1" else { return }
            clock.advance(by: .seconds(15 * 60))
            closedWhileInFlight.withLock { $0 = world.order.filter { n in world.calls.contains("submit apply \(n)") && !world.calls.contains("submit confirm \(n)") } }
        }
        let budget2 = RolloutPlan.Options(disruptionBudget: 2)
        let run = Task { try await Self.executor(rig, policy: NodeStartPolicy(window: Self.night, noWait: true)).run(rig.plan(options: budget2)) }
        // a1 finished and a3 was refused while a2 is still rebuilding: the rollout says it stops between nodes.
        #expect(await Self.waitForMessage(rig, "Stopping between nodes (outside the maintenance window): no further node starts; waiting for a2 in flight to finish"), "\(rig.sink.messages)")
        #expect(closedWhileInFlight.withLock { $0 } == ["a1", "a2"])
        await rig.world.update("a2") { $0.rebuildPollsLeft = 0 }
        let stopped: RolloutFailure? = await {
            do {
                _ = try await run.value
                return nil
            } catch { return error as? RolloutFailure }
        }()
        #expect(stopped?.kind == .outsideWindow)
        #expect(stopped?.exitCode == 9)
        #expect(stopped?.message == "stopped before a3: outside the maintenance window (daily 22:00–04:00 UTC); it opens at "
            + "2024-05-02T22:00:00.000Z and --no-wait was given. Rerun nk3 inside the window to resume.")
        #expect(rig.sink.events.last?.message == stopped?.message && rig.sink.events.last?.status == .failed)
        // Both in-flight nodes went through their whole sequence and were confirmed; no third node started.
        for n in ["a1", "a2"] {
            let node = await rig.world.node(n)
            #expect(node.confirmed == [1] && node.files == RT.files("new") && node.cordonedByNK3 == nil, "\(n)")
        }
        let calls = await rig.world.calls
        for step in ["drain a2", "submit reboot a2", "uncordon a2", "submit confirm a2"] {
            #expect(calls.contains(step), "\(step): \(calls)")
        }
        let touched = calls.filter { !$0.hasPrefix("status ") && ($0.hasSuffix(" a3") || $0.hasSuffix(" a4")) }
        #expect(touched.isEmpty, "only probed: \(touched)")
        #expect(await rig.world.lease == nil)
        let saved = try #require(await rig.world.progress)
        #expect(Set(saved.done.keys) == ["a1", "a2"] && saved.inFlight.isEmpty)

        // The next night the same command resumes with the rest.
        rig.clock.advance(by: .seconds(18 * 3600))
        let summary = try await Self.executor(rig, policy: NodeStartPolicy(window: Self.night, noWait: true)).run(rig.plan(options: budget2))
        #expect(summary.alreadyDone == ["a1", "a2"] && summary.updated.sorted() == ["a3", "a4"])
        await rig.expectConverged()
    }

    @Test func outsideTheWindowTheRolloutWaitsSayingUntilWhenThenStarts() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        rig.clock.advance(by: .seconds(9 * 3600 + 59 * 60))  // 21:59 UTC
        let run = Task { try await Self.executor(rig, policy: NodeStartPolicy(window: Self.night)).run(rig.plan()) }
        #expect(await Self.waitForMessage(rig, "a1 waits for the maintenance window (daily 22:00–04:00 UTC) until 2024-05-01T22:00:00.000Z"), "\(rig.sink.messages)")
        #expect(await !rig.world.calls.contains { $0.hasPrefix("submit") }, "nothing is sent while the window is closed")
        // The hold sleeps until the opening (at most windowRecheck); move virtual time there.
        var lifted = false
        for _ in 0..<5 where !lifted {
            rig.clock.advance(by: .seconds(60))
            lifted = await Self.waitForMessage(rig, "Hold lifted: a1 starts now", within: .seconds(5))
        }
        #expect(lifted)
        _ = try await run.value
        await rig.expectConverged()
        let liftedAt = try #require(rig.sink.events.first { $0.message.contains("Hold lifted") }?.timestamp)
        #expect(liftedAt >= RT.t0.addingTimeInterval(10 * 3600))
    }

    @Test func aFiringAlertHoldsTheNodeNamedUntilItClears() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        let asked = Mutex(0)
        var policy = NodeStartPolicy(alertRecheck: .milliseconds(500))
        policy.blockingAlerts = {
            let n = asked.withLock { $0 += 1; return $0 }
            return n <= 3 ? ["KubeNodeNotReady", "NodeOnFire"] : []
        }
        _ = try await Self.executor(rig, policy: policy).run(rig.plan())
        await rig.expectConverged()
        let msgs = rig.sink.messages
        #expect(msgs.filter { $0 == "a1 waits: Prometheus alert(s) firing: KubeNodeNotReady, NodeOnFire" }.count == 1)
        #expect(asked.withLock { $0 } == 4)
        let waitIndex = try #require(msgs.firstIndex { $0.contains("alert(s) firing") })
        let liftIndex = try #require(msgs.firstIndex { $0.contains("Hold lifted") })
        #expect(waitIndex < liftIndex)
    }

    @Test func anUnreachableAlertGateHoldsTheNode() async throws {
        let rig = ExecutorRig(agents: ["a1"])
        let asked = Mutex(0)
        var policy = NodeStartPolicy(alertRecheck: .milliseconds(500))
        policy.blockingAlerts = {
            let n = asked.withLock { $0 += 1; return $0 }
            if n == 1 { throw CoordinatorError(.unreachable, "connection refused") }
            return []
        }
        _ = try await Self.executor(rig, policy: policy).run(rig.plan())
        #expect(rig.sink.messages.contains { $0.contains("a1 waits: cannot ask Prometheus for firing alerts") })
        await rig.expectConverged()
    }
}

@Suite("Maintenance window (pure)")
struct MaintenanceWindowTests {
    static func date(_ s: String) -> Date { RolloutLog.parseTimestamp(s)! }

    @Test func overnightWindowBelongsToTheDayItOpens() {
        // Mon–Fri 22:00–04:00 Europe/Berlin (UTC+2 in May 2024). 2024-05-03 is a Friday.
        let w = MaintenanceWindow(days: [2, 3, 4, 5, 6], start: 22 * 60, end: 4 * 60, timeZone: TimeZone(identifier: "Europe/Berlin")!)
        #expect(w.contains(Self.date("2024-05-03T20:30:00Z")))  // Fri 22:30 local
        #expect(w.contains(Self.date("2024-05-04T01:59:00Z")))  // Sat 03:59 local: Friday's window
        #expect(!w.contains(Self.date("2024-05-04T02:00:00Z")))  // Sat 04:00 local: closed
        #expect(!w.contains(Self.date("2024-05-04T20:30:00Z")))  // Sat 22:30: no window opens on Saturday
        #expect(!w.contains(Self.date("2024-05-05T01:00:00Z")))  // Sun 03:00
        #expect(!w.contains(Self.date("2024-05-06T01:00:00Z")))  // Mon 03:00: Sunday opened none
        // Next opening from Saturday noon: Monday 22:00 local = 20:00 UTC.
        #expect(w.nextOpening(after: Self.date("2024-05-04T10:00:00Z")) == Self.date("2024-05-06T20:00:00Z"))
    }

    @Test func sameDayWindowAndDaylightSavingChange() {
        let berlin = TimeZone(identifier: "Europe/Berlin")!
        let w = MaintenanceWindow(start: 9 * 60, end: 17 * 60, timeZone: berlin)
        // 2024-03-31: clocks go from UTC+1 to UTC+2 at 02:00 local. 09:00 local is 07:00 UTC that day, 08:00 the day before.
        #expect(w.nextOpening(after: Self.date("2024-03-30T12:00:00Z")) == Self.date("2024-03-31T07:00:00Z"))
        #expect(w.contains(Self.date("2024-03-31T07:00:00Z")))
        #expect(!w.contains(Self.date("2024-03-31T06:59:00Z")))
        #expect(w.description == "daily 09:00–17:00 Europe/Berlin")
    }

    @Test func inventoryKeysParseAndBadOnesAreNamed() throws {
        let base = "join_address: 10.0.0.1\njoin_token: t\nnix_channel: nixos-24.05\nnodes:\n  10.0.0.1: {}\n"
        let inv = try Inventory.parse(
            yaml: base + "window: {days: [mon, Friday], start: \"22:00\", end: \"04:00\", timezone: Europe/Berlin}\n"
                + "gates:\n  prometheus: {url: \"http://127.0.0.1:9090\", alert_filter: \"Node.*\"}\nrollout_log_dir: logs\n",
            file: "/srv/c/inventory.yaml")
        #expect(inv.operate.window?.days == [2, 6])
        #expect(inv.operate.window?.timeZone.identifier == "Europe/Berlin")
        #expect(inv.operate.prometheus == PrometheusGateSettings(url: "http://127.0.0.1:9090", alertFilter: "Node.*"))
        #expect(inv.operate.rolloutLogDirectory == "/srv/c/logs")
        #expect(try Inventory.parse(yaml: base, file: "/srv/c/inventory.yaml").operate.rolloutLogDirectory == "/srv/c/.nk3/rollouts")
        // `agent_binary` is resolved like the other paths; absent, nodes keep what bootstrap placed.
        #expect(try Inventory.parse(yaml: base + "agent_binary: dist/nk3-agent\n", file: "/srv/c/inventory.yaml").agentBinaryPath == "/srv/c/dist/nk3-agent")
        #expect(try Inventory.parse(yaml: base, file: "/srv/c/inventory.yaml").agentBinaryPath == nil)
        for (bad, says) in [
            ("window: {start: \"22:00\", end: \"4\"}\n", "window.end"),
            ("window: {start: \"22:00\", end: \"04:00\", timezone: Mars/Base}\n", "not an IANA time zone"),
            ("window: {start: \"22:00\", end: \"04:00\", days: [someday]}\n", "not a day"),
            ("window: {start: \"22:00\", ends: \"04:00\"}\n", "did you mean 'window.end'"),
            ("gates: {prometheus: {url: \"ftp://x\"}}\n", "http(s) URL"),
            ("gates: {prometheus: {url: \"http://x:9090\", alert_filter: \"(\"}}\n", "not a regular expression"),
        ] {
            #expect(throws: InventoryError.self) { try Inventory.parse(yaml: base + bad, file: "i.yaml") }
            do { _ = try Inventory.parse(yaml: base + bad, file: "i.yaml") } catch {
                #expect("\(error)".contains(says), "\(bad): \(error)")
            }
        }
    }
}
