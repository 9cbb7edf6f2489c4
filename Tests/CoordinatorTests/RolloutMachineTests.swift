import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// The rollout state machine, driven by hand: inputs in, actions out, no I/O.
@Suite struct RolloutMachineTests {
    let t = RT.t0

    /// Starts a one-node boot rollout and returns the machine after initial gates passed.
    func startedAfterGates(_ plan: RolloutPlan, node: String = "n1") -> (RolloutMachine, [RolloutMachine.Action]) {
        var m = RolloutMachine(plan: plan)
        let first = m.start(RT.start(plan.nodes.map(\.name)))
        #expect(first.work == [.runGates(since: nil)])
        let next = m.handle(.gatesPassed(at: t))
        return (m, next)
    }

    @Test func bootPipelineRunsEveryStepInOrder() {
        let plan = RT.applyPlan(agents: ["n1"])
        var (m, a) = startedAfterGates(plan)
        #expect(a.work == [.sendBundle(node: "n1", bundle: RT.bundle())])
        #expect(a.messages == ["Rebuilding NixOS on n1"])
        // No write before the send: a record without a serial is what a rerun assumes anyway (resumeView).
        #expect(a.saved.isEmpty)

        a = m.handle(.bundleAccepted(node: "n1", receipt: .init(serial: 7, kind: "apply", operationID: "op1", phase: .staged, message: "")))
        #expect(a.work == [.waitRebuild(node: "n1", operationID: "op1", applySerial: 7)])
        #expect(a.saved.last?.inFlight["n1"]?.applySerial == 7)
        #expect(a.saved.last?.inFlight["n1"]?.step == .rebuild)

        a = m.handle(.rebuildFinished(node: "n1", outcome: .awaitingConfirm(bootIDAtRebuild: "n1-boot-1"), at: t))
        #expect(a.work == [.drain(node: "n1")])
        #expect(a.messages == ["Draining n1"])
        // No write before an apply's drain: its record would carry nothing the rebuild record lacks, and a rerun
        // resumes it by the agent's open apply and nk3's cordon (resumeView; RolloutResumeTests).
        #expect(a.saved.isEmpty)

        a = m.handle(.drained(node: "n1", status: RT.status("n1", boot: 1, kernel: "6.6.45")))
        #expect(a.work == [.reboot(node: "n1")])
        #expect(a.messages == ["Rebooting n1"])
        #expect(a.saved[0].inFlight["n1"]?.bootIDBeforeReboot == "n1-boot-1")

        #expect(a.first == .saveProgress(a.saved[0]), "saved before the reboot is asked for")
        #expect(a.saved[0].inFlight["n1"]?.step == .reboot)

        a = m.handle(.rebootIssued(node: "n1"))
        #expect(a.work == [.waitReachable(node: "n1", oldBootID: "n1-boot-1", sawOldBootID: false)])
        #expect(a.saved.isEmpty, "wait-reachable resumes like reboot: nothing to write")

        a = m.handle(.agentReachable(node: "n1", status: RT.status("n1", boot: 2, kernel: "6.6.46"), at: t))
        #expect(a.messages == ["n1 is reachable"])
        // Ready must come from the boot the agent came back with (a Node still says Ready right after a reboot).
        #expect(a.work == [.waitReady(node: "n1", boot: NodeBoot(bootID: "n1-boot-2", since: t))])
        #expect(a.saved.map { $0.inFlight["n1"]?.step } == [.waitReady], "back from the reboot: written once")

        a = m.handle(.nodeReady(node: "n1", at: t))
        #expect(a.messages == ["kubelet is ready on n1"])
        #expect(a.work == [.uncordon(node: "n1")])
        #expect(a.saved.isEmpty)

        let back = t.addingTimeInterval(42)
        a = m.handle(.uncordoned(node: "n1", wasOurs: true, at: back))
        #expect(a.messages == ["n1 uncordoned"])
        // Ceph must be fresh since the node came back.
        #expect(a.work == [.runGates(since: back)])
        #expect(a.saved.isEmpty)

        a = m.handle(.gatesPassed(at: back))
        #expect(a.work == [.confirm(node: "n1", applySerial: 7)])
        #expect(a.saved.isEmpty)

        a = m.handle(.confirmed(node: "n1"))
        let confirmed = "Confirmed apply 7 on n1: its agent keeps the new generation"  // an event of its own, phase confirm
        #expect(a.first == .notify(.init(node: "n1", phase: .confirm, status: .ok, message: confirmed)))
        #expect(a.messages.contains("Kernel upgraded from 6.6.45 to 6.6.46 on n1"))
        #expect(a.summary?.updated == ["n1"])
        #expect(a.summary?.kernelChanges["n1"] == .init(from: "6.6.45", to: "6.6.46"))
        #expect(m.isFinished)
    }

    @Test func switchPipelineHasNoDrainOrReboot() {
        let plan = RT.applyPlan(agents: ["n1"], bundle: RT.bundle(action: .switch))
        var sim = MachineSim(plan: plan)
        sim.run(RT.start(["n1"]))
        #expect(sim.summary?.updated == ["n1"])
        let kinds = sim.trace.work.map { "\($0)".prefix(while: { $0 != "(" }) }
        #expect(kinds == ["runGates", "sendBundle", "waitRebuild", "waitReady", "runGates", "confirm", "done"])
    }

    @Test func rebootRolloutSkipsSendAndConfirm() {
        let plan = RolloutPlan(kind: .reboot, nodes: [.init(name: "n1", isServer: false, bundle: nil)])
        var sim = MachineSim(plan: plan)
        sim.run(RT.start(["n1"]))
        #expect(sim.summary?.updated == ["n1"])
        let kinds = sim.trace.work.map { "\($0)".prefix(while: { $0 != "(" }) }
        #expect(kinds == ["runGates", "drain", "reboot", "waitReachable", "waitReady", "uncordon", "runGates", "done"])
        #expect(sim.messages.contains("n1 uncordoned"))
    }

    @Test func unchangedConfigSkipsTheNodeWithoutTouchingIt() {
        let plan = RT.applyPlan(agents: ["n1", "n2"])
        var m = RolloutMachine(plan: plan)
        // n1 already runs the new files; n2 does not.
        let a = m.start(RT.start(["n1", "n2"]) { $0 == "n1" ? RT.status($0, files: RT.files("new")) : RT.status($0) })
        #expect(a.messages.first == "No action needed on n1")
        #expect(!a.work.contains { $0.node == "n1" })
        // Nothing at all to do → no gates, done at once (the Python nk3's "No action needed" run).
        var m2 = RolloutMachine(plan: RT.applyPlan(agents: ["n1"]))
        let b = m2.start(RT.start(["n1"]) { RT.status($0, files: RT.files("new")) })
        #expect(b.work == [.done(b.summary!)])
        #expect(b.summary?.unchanged == ["n1"])
    }

    @Test func rebuildReportingUnchangedSkipsTheRestOfTheNode() {
        let plan = RT.applyPlan(agents: ["n1"], bundle: RT.bundle("old", upgrade: true))
        var (m, _) = startedAfterGates(plan)
        _ = m.handle(.bundleAccepted(node: "n1", receipt: .init(serial: 1, kind: "apply", operationID: "o", phase: nil, message: "")))
        let a = m.handle(.rebuildFinished(node: "n1", outcome: .unchanged(message: "same system"), at: t))
        #expect(a.messages.first == "No upgrade needed on n1")
        #expect(!a.work.contains { if case .drain = $0 { return true } else { return false } })
        #expect(a.summary?.unchanged == ["n1"])
    }

    @Test func rebuildFailureAbortsBeforeAnyDrain() throws {
        let plan = RT.applyPlan(agents: ["n1", "n2"])
        var sim = MachineSim(plan: plan)
        sim.override = { action, _ in
            if case .waitRebuild(let n, _, _) = action {
                return .rebuildFinished(node: n, outcome: .failed(message: "error: unable to download 'https://nixos.org/channels/woofwoof'"), at: RT.t0)
            }
            return nil
        }
        sim.run(RT.start(["n1", "n2"]))
        let f = try #require(sim.failure)
        #expect(f.kind == .rebuildFailed)
        #expect(f.exitCode == 4)
        #expect(f.node == "n1")
        #expect(f.step == .rebuild)
        #expect(f.message.contains("n1") && f.message.contains("rebuild") && f.message.contains("woofwoof"))
        #expect(f.message.contains("was not drained"))
        #expect(!sim.trace.contains { if case .drain = $0 { return true } else { return false } })
        #expect(!sim.trace.contains { $0.node == "n2" })
    }

    @Test func oldBootIDIsNotARebootAndTimesOut() throws {
        let plan = RT.applyPlan(agents: ["n1"])
        var sim = MachineSim(plan: plan)
        var answered = 0
        sim.override = { action, sim in
            switch action {
            case .reboot(let n): return .rebootIssued(node: n)  // the model would bump the boot id; this node does not reboot
            case .waitReachable(let n, _, _):
                answered += 1
                if answered <= 3 { return .agentReachable(node: n, status: sim.status(n), at: RT.t0) }
                return .timedOut(node: n, step: .waitReachable, after: .seconds(900))
            default: return nil
            }
        }
        sim.run(RT.start(["n1"]))
        // Three answers with the old boot id were each met with another wait, not with progress.
        let waits = sim.trace.filter { if case .waitReachable = $0 { return true } else { return false } }
        #expect(waits.count == 4)
        #expect(!sim.trace.contains { if case .waitReady = $0 { return true } else { return false } })
        let f = try #require(sim.failure)
        #expect(f.kind == .timeout)
        #expect(f.step == .waitReachable)
        #expect(f.message.contains("old boot id for 15m"))
        #expect(f.message.contains("n1 stays cordoned"))
        #expect(!sim.messages.contains("n1 is reachable"))
    }

    @Test("an agent answering with an unknown boot id (it cannot read its machine mid-shutdown) is not a reboot")
    func unknownBootIDIsNotAReboot() throws {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1"]))
        var answered = 0
        sim.override = { action, sim in
            switch action {
            case .reboot(let n): return .rebootIssued(node: n)
            case .waitReachable(let n, _, _):
                answered += 1
                var status = sim.status(n)
                status.bootID = AgentStatus.unknownBootID
                status.kernel = "unknown"
                if answered <= 2 { return .agentReachable(node: n, status: status, at: RT.t0) }
                return .timedOut(node: n, step: .waitReachable, after: .seconds(900))
            default: return nil
            }
        }
        sim.run(RT.start(["n1"]))
        #expect(!sim.trace.contains { if case .waitReady = $0 { return true } else { return false } })
        #expect(!sim.messages.contains { $0.hasPrefix("Kernel upgraded") })
        #expect(sim.failure?.step == .waitReachable)
    }

    @Test func agentNeverBackIsUnreachable() {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1"]))
        sim.override = { action, _ in
            if case .waitReachable(let n, _, _) = action { return .timedOut(node: n, step: .waitReachable, after: .seconds(60)) }
            return nil
        }
        sim.run(RT.start(["n1"]))
        #expect(sim.failure?.kind == .unreachable)
        #expect(sim.failure?.exitCode == 3)
        #expect(sim.failure?.message.contains("did not come back within 1m") == true)
    }

    @Test func kubeletNeverReadyAbortsLeavesNodeCordonedAndUnconfirmed() throws {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1", "n2"]))
        sim.override = { action, _ in
            if case .waitReady(let n, _) = action { return .timedOut(node: n, step: .waitReady, after: .seconds(600)) }
            return nil
        }
        sim.run(RT.start(["n1", "n2"]))
        let f = try #require(sim.failure)
        #expect(f.kind == .timeout && f.exitCode == 5)
        #expect(f.node == "n1" && f.step == .waitReady)
        #expect(f.message.contains("kubelet did not become Ready within 10m"))
        #expect(f.message.contains("n1 stays cordoned"))
        #expect(f.message.contains("rolls back to the previous generation by itself"))
        #expect(!sim.trace.contains { if case .uncordon = $0 { return true } else { return false } })
        #expect(!sim.trace.contains { if case .confirm = $0 { return true } else { return false } })
        // The saved progress still names n1 in flight, so a rerun recovers it.
        #expect(sim.saves.last?.inFlight["n1"]?.step == .waitReady)
        #expect(sim.disrupted == ["n1"])
    }

    @Test func gateFailureAfterANodeAbortsWithoutConfirming() {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1"]))
        var gateRuns = 0
        sim.override = { action, _ in
            if case .runGates = action {
                gateRuns += 1
                if gateRuns == 2 { return .failed(node: nil, step: .gates, kind: .timeout, cause: "ceph state is HEALTH_WARN") }
            }
            return nil
        }
        sim.run(RT.start(["n1"]))
        #expect(sim.failure?.kind == .timeout)
        #expect(sim.failure?.step == .gates)
        #expect(sim.failure?.node == "n1")
        #expect(sim.failure?.message.contains("HEALTH_WARN") == true)
        #expect(!sim.trace.contains { if case .confirm = $0 { return true } else { return false } })
    }

    @Test func initialGateFailureTouchesNothing() {
        var m = RolloutMachine(plan: RT.applyPlan(agents: ["n1"]))
        _ = m.start(RT.start(["n1"]))
        let a = m.handle(.timedOut(node: nil, step: .gates, after: .seconds(900)))
        #expect(a.failure?.kind == .timeout)
        #expect(a.failure?.message.contains("No node was touched") == true)
        #expect(a.saved.isEmpty || a.saved.allSatisfy { $0.inFlight.isEmpty })
    }

    @Test func skipInitialHealthStartsAtOnce() {
        var m = RolloutMachine(plan: RT.applyPlan(agents: ["n1"], options: .init(skipInitialHealth: true)))
        let a = m.start(RT.start(["n1"]))
        #expect(a.work == [.sendBundle(node: "n1", bundle: RT.bundle())])
    }

    @Test func comingBackRolledBackIsExit6() {
        var sim = MachineSim(plan: RT.applyPlan(agents: ["n1"]))
        sim.override = { action, sim in
            if case .waitReachable(let n, _, _) = action {
                var s = sim.status(n)
                s.lastResult = OperationResult(id: "op", serial: 1, outcome: .rolledBack, message: "new generation failed to boot", finishedAt: RT.t0)
                return .agentReachable(node: n, status: s, at: RT.t0)
            }
            return nil
        }
        sim.run(RT.start(["n1"]))
        #expect(sim.failure?.kind == .rolledBack)
        #expect(sim.failure?.exitCode == 6)
        #expect(sim.failure?.message.contains("previous generation") == true)
    }

    @Test func unreachableAgentAtStartAbortsBeforeAnything() {
        var m = RolloutMachine(plan: RT.applyPlan(agents: ["n1", "n2"]))
        let a = m.start(RT.start(["n1", "n2"]) { $0 == "n2" ? nil : RT.status($0) })
        #expect(a.failure?.kind == .unreachable)
        #expect(a.failure?.message.contains("n2 (connection refused)") == true)
        #expect(a.work == [.abort(a.failure!)])
        #expect(a.saved.isEmpty)
    }

    @Test func invalidPlansAreExit2() {
        let cases: [RolloutPlan] = [
            RT.applyPlan(agents: ["n1"], options: .init(disruptionBudget: 0)),
            RT.applyPlan(agents: ["n1"], options: .init(explicitOrder: ["nope"])),
            RT.applyPlan(agents: ["n1", "n1"]),
            RolloutPlan(kind: .apply, nodes: [.init(name: "n1", isServer: false, bundle: nil)]),
            RT.applyPlan(agents: ["n1"], bundle: ApplyBundle(files: ["../etc": "x"], action: .boot)),
        ]
        for plan in cases {
            var m = RolloutMachine(plan: plan)
            let a = m.start(RT.start(plan.nodes.map(\.name)))
            #expect(a.failure?.kind == .invalidInput, "\(plan)")
            #expect(a.failure?.exitCode == 2)
            #expect(a.work.count == 1)
        }
    }

    @Test func orderIsAgentsBeforeServersThenInventoryUnlessExplicit() {
        let plan = RT.applyPlan(servers: ["s1", "s2", "s3"], agents: ["a1", "a2"])
        #expect(plan.order() == ["a1", "a2", "s1", "s2", "s3"])
        var explicit = plan
        explicit.options.explicitOrder = ["s2", "a2"]
        #expect(explicit.order() == ["s2", "a2", "a1", "s1", "s3"])
        var sim = MachineSim(plan: plan)
        sim.run(RT.start(plan.nodes.map(\.name)))
        #expect(sim.summary?.updated == ["a1", "a2", "s1", "s2", "s3"])
    }

    @Test func quorumRefusesTwoServerClustersUnlessAllowed() {
        // https://docs.k3s.io/datastore/ha-embedded: two servers survive none being down.
        let plan = RT.applyPlan(servers: ["s1", "s2"])
        #expect(plan.maxServersDown == 0)
        var m = RolloutMachine(plan: plan)
        let a = m.start(RT.start(["s1", "s2"]))
        #expect(a.failure?.kind == .invalidInput)
        #expect(a.failure?.message.contains("--allow-quorum-loss") == true)
        var allowed = plan
        allowed.options.allowQuorumLoss = true
        var sim = MachineSim(plan: allowed)
        sim.run(RT.start(["s1", "s2"]))
        #expect(sim.summary?.updated == ["s1", "s2"])
        #expect(sim.maxServersDisrupted == 1)
        // Unchanged servers need no quorum exception.
        var m3 = RolloutMachine(plan: RT.applyPlan(servers: ["s1"], agents: ["a1"]))
        let c = m3.start(RT.start(["s1", "a1"]) { $0 == "s1" ? RT.status($0, files: RT.files("new")) : RT.status($0) })
        #expect(c.failure == nil)
    }

    @Test func unexpectedInputIsAnInternalError() {
        var (m, _) = startedAfterGates(RT.applyPlan(agents: ["n1"]))
        let a = m.handle(.nodeReady(node: "n1", at: t))
        #expect(a.failure?.kind == .other)
        #expect(a.failure?.message.contains("internal error") == true)
        #expect(m.handle(.gatesPassed(at: t)).isEmpty)  // finished machines ignore further input
    }

    @Test func exitCodeTableIsComplete() {
        let table = RolloutFailure.exitCodeTable
        for code in 0...7 { #expect(table.contains("  \(code)  ")) }
        #expect(Set(RolloutFailure.Kind.allCases.map(\.exitCode)).count == RolloutFailure.Kind.allCases.count)
    }
}

/// Resuming after a killed coordinator: what the machine does with each node it finds.
@Suite struct RolloutResumeTests {
    let plan = RT.applyPlan(agents: ["n1", "n2"])
    let newFiles = RT.files("new")

    func progress(_ inFlight: [String: RolloutProgress.InFlight], done: [String: String] = [:]) -> RolloutProgress {
        RolloutProgress(planFingerprint: plan.fingerprint, done: done, inFlight: inFlight)
    }

    func op(_ phase: ApplyPhase, bootAtRebuild: String? = "n1-boot-1") -> OperationStatus {
        OperationStatus(id: "op-n1", serial: 5, kind: "apply", action: .boot, phase: phase, startedAt: RT.t0, bootIDAtRebuild: bootAtRebuild)
    }

    @Test func drainedButNotRebootedResumesAtDrain() {
        var m = RolloutMachine(plan: plan)
        let a = m.start(
            RT.start(["n1", "n2"], cordoned: ["n1": "nk3 rollout"], progress: progress(["n1": .init(step: .drain, applySerial: 5)])) {
                $0 == "n1" ? RT.status($0, files: newFiles, operation: op(.awaitingConfirm)) : RT.status($0)
            })
        #expect(a.messages.contains("Resuming n1 at drain"))
        // Already disrupted: it carries on without waiting for gates, n2 waits.
        #expect(a.work == [.drain(node: "n1")])
        #expect(m.nodesInFlight == ["n1"])
    }

    @Test("an apply's drain is not written (its record reads rebuild): a rerun resumes the node at drain from the rebuild record, by nk3's cordon and the agent's open apply; a reboot rollout still writes its drain")
    func drainOfAnApplyResumesFromTheRebuildRecord() {
        let record = RolloutProgress.InFlight(step: .drain, applySerial: 5, operationID: "op-n1")
        #expect(progress(["n1": record]).resumeView.inFlight["n1"]?.step == .rebuild)
        #expect(progress(["n1": .init(step: .drain)]).resumeView.inFlight["n1"]?.step == .drain, "a reboot rollout's record has no serial")
        // What is stored now when nk3 was killed mid-drain: the rebuild record, and nk3's cordon on the node.
        var m = RolloutMachine(plan: plan)
        let a = m.start(
            RT.start(["n1", "n2"], cordoned: ["n1": "nk3 rollout"], progress: progress(["n1": .init(step: .rebuild, applySerial: 5, operationID: "op-n1")])) {
                $0 == "n1" ? RT.status($0, files: newFiles, operation: op(.awaitingConfirm)) : RT.status($0)
            })
        #expect(a.messages.contains("Resuming n1 at drain"), "\(a.messages)")
        #expect(a.work == [.drain(node: "n1")])
        #expect(m.nodesInFlight == ["n1"])
        // Killed after the rebuild, before the cordon: no cordon, so no disruption yet; it waits for the gates.
        var fresh = RolloutMachine(plan: plan)
        let b = fresh.start(
            RT.start(["n1", "n2"], progress: progress(["n1": .init(step: .rebuild, applySerial: 5, operationID: "op-n1")])) {
                $0 == "n1" ? RT.status($0, files: newFiles, operation: op(.awaitingConfirm)) : RT.status($0)
            })
        #expect(b.messages.contains("Resuming n1 at drain"), "\(b.messages)")
        #expect(b.work == [.runGates(since: nil)])

        // A reboot rollout still saves its drain: for a record without a serial it is what tells a rerun the drain began.
        let reboot = RolloutPlan(kind: .reboot, nodes: [.init(name: "n1", isServer: false, bundle: nil)])
        var r = RolloutMachine(plan: reboot)
        _ = r.start(RT.start(["n1"]))
        let drain = r.handle(.gatesPassed(at: RT.t0))
        #expect(drain.work == [.drain(node: "n1")])
        #expect(drain.saved.map { $0.inFlight["n1"]?.step } == [.drain])
    }

    @Test("a node whose agent reports the killed run's reboot as pending is waited for, not drained again")
    func pendingRebootResumesAtWaitReachable() {
        var m = RolloutMachine(plan: plan)
        let a = m.start(
            RT.start(["n1", "n2"], cordoned: ["n1": "nk3 rollout"], progress: progress(["n1": .init(step: .reboot, applySerial: 5)])) {
                guard $0 == "n1" else { return RT.status($0) }
                var s = RT.status($0, files: newFiles, operation: op(.awaitingConfirm))
                s.pendingReboot = PendingRebootStatus(bootID: s.bootID, reason: "nk3 rollout", serial: 6, requestedAt: Date())
                return s
            })
        #expect(a.messages.contains("Resuming n1 at wait-reachable"), "\(a.messages)")
        #expect(a.work == [.waitReachable(node: "n1", oldBootID: "n1-boot-1", sawOldBootID: false)])
    }

    @Test("a pending reboot of an earlier boot (reported after it happened) does not count")
    func stalePendingRebootIsIgnored() {
        var m = RolloutMachine(plan: plan)
        let a = m.start(
            RT.start(["n1", "n2"], cordoned: ["n1": "nk3 rollout"], progress: progress(["n1": .init(step: .drain, applySerial: 5)])) {
                guard $0 == "n1" else { return RT.status($0) }
                var s = RT.status($0, files: newFiles, operation: op(.awaitingConfirm))
                s.pendingReboot = PendingRebootStatus(bootID: "n1-boot-0", reason: "x", serial: 6, requestedAt: Date())
                return s
            })
        #expect(a.work == [.drain(node: "n1")])
    }

    @Test func rebootedNodeResumesAtReadyThenConfirms() {
        var sim = MachineSim(plan: plan)
        sim.run(
            RT.start(["n1", "n2"], cordoned: ["n1": "nk3 rollout"], progress: progress(["n1": .init(step: .waitReachable, applySerial: 5, bootIDBeforeReboot: "n1-boot-1")])) {
                $0 == "n1" ? RT.status($0, boot: 2, files: newFiles, operation: op(.awaitingConfirm)) : RT.status($0)
            })
        let work = sim.trace.work
        #expect(work.first == .waitReady(node: "n1", boot: NodeBoot(bootID: "n1-boot-2", since: RT.t0)))
        #expect(work.contains(.confirm(node: "n1", applySerial: 5)))
        #expect(!work.contains(.drain(node: "n1")))
        #expect(sim.summary?.updated == ["n1", "n2"])
    }

    @Test func unreachableNodeThatWasRebootingIsWaitedFor() {
        var sim = MachineSim(plan: plan)
        sim.sim["n1"]!.boot = 2
        sim.run(
            RT.start(["n1", "n2"], cordoned: ["n1": "nk3"], progress: progress(["n1": .init(step: .reboot, applySerial: 5, bootIDBeforeReboot: "n1-boot-1")])) {
                $0 == "n1" ? nil : RT.status($0)
            })
        #expect(sim.trace.work.first == .waitReachable(node: "n1", oldBootID: "n1-boot-1", sawOldBootID: false))
        #expect(sim.failure == nil)
        #expect(sim.summary?.updated.contains("n1") == true)
    }

    @Test func sentButUnrecordedApplyIsAdoptedByHash() {
        var m = RolloutMachine(plan: plan)
        let a = m.start(
            RT.start(["n1", "n2"], progress: progress(["n1": .init(step: .send)])) {
                $0 == "n1" ? RT.status($0, files: newFiles, operation: op(.rebuilding)) : RT.status($0)
            })
        // The open apply (serial 5, unknown to the progress record) is adopted: its files are ours.
        // Waiting for a boot rebuild disrupts nothing, so it overlaps the initial gates...
        #expect(a.work == [.waitRebuild(node: "n1", operationID: "op-n1", applySerial: 5), .runGates(since: nil)])
        // ...but the drain waits for them.
        let b = m.handle(.rebuildFinished(node: "n1", outcome: .awaitingConfirm(bootIDAtRebuild: "n1-boot-1"), at: RT.t0))
        #expect(b.work.isEmpty)
        let c = m.handle(.gatesPassed(at: RT.t0))
        #expect(c.work == [.drain(node: "n1")])
    }

    @Test func confirmedBeforeTheKillCountsAsDone() {
        var m = RolloutMachine(plan: plan)
        let committed = OperationResult(id: "op-n1", serial: 5, outcome: .committed, message: "", finishedAt: RT.t0)
        var up = plan
        up.nodes = up.nodes.map { var n = $0; n.bundle?.upgrade = true; return n }
        m = RolloutMachine(plan: up)
        let p = RolloutProgress(planFingerprint: up.fingerprint, inFlight: ["n1": .init(step: .confirm, applySerial: 5)])
        let a = m.start(RT.start(["n1", "n2"], progress: p) { $0 == "n1" ? RT.status($0, files: newFiles, lastResult: committed) : RT.status($0) })
        #expect(a.messages.contains("n1 was finished by the interrupted rollout; skipping"))
        #expect(!a.work.contains { $0.node == "n1" })
    }

    @Test func doneNodesOfTheSamePlanAreSkippedOnlyIfTheirHashStillMatches() {
        var up = plan
        up.nodes = up.nodes.map { var n = $0; n.bundle?.upgrade = true; return n }
        let h = up.nodes[0].desiredHash!
        var m = RolloutMachine(plan: up)
        let p = RolloutProgress(planFingerprint: up.fingerprint, done: ["n1": h, "n2": h])
        let a = m.start(RT.start(["n1", "n2"], progress: p) { $0 == "n1" ? RT.status($0, files: newFiles) : RT.status($0) })
        #expect(a.messages.contains("n1 was finished by the interrupted rollout; skipping"))
        // n2's files changed since: it is rolled again.
        #expect(!a.messages.contains("n2 was finished by the interrupted rollout; skipping"))
        // Another plan's record counts for nothing.
        var m2 = RolloutMachine(plan: up)
        let other = RolloutProgress(planFingerprint: "other", done: ["n1": h])
        let b = m2.start(RT.start(["n1", "n2"], progress: other) { RT.status($0, files: newFiles) })
        #expect(!b.messages.contains { $0.contains("interrupted") })
    }

    @Test func nodeLeftCordonedIsBroughtBackBeforeAnythingElse() {
        var sim = MachineSim(plan: plan)
        sim.disrupted = ["n2"]
        sim.run(RT.start(["n1", "n2"], cordoned: ["n2": "nk3 rollout (aborted)"]))
        #expect(sim.messages.first == "n2 was left cordoned by nk3 (nk3 rollout (aborted)); bringing it back")
        let work = sim.trace.work
        // Ready before uncordon, gates before any other node is touched.
        #expect(Array(work.prefix(3)) == [.waitReady(node: "n2", boot: nil), .uncordon(node: "n2"), .runGates(since: RT.t0.addingTimeInterval(2))])
        #expect(sim.summary?.recovered == ["n2"])
        #expect(sim.summary?.updated.sorted() == ["n1", "n2"])
        #expect(sim.gatesWhileDisrupted == 0)
    }

    @Test func recoveringNodeThatNeverGetsReadyIsNotUncordoned() {
        var sim = MachineSim(plan: plan)
        sim.override = { action, _ in
            if case .waitReady(let n, _) = action { return .timedOut(node: n, step: .waitReady, after: .seconds(600)) }
            return nil
        }
        sim.run(RT.start(["n1", "n2"], cordoned: ["n2": "nk3"]))
        #expect(sim.failure?.node == "n2")
        #expect(!sim.trace.contains(.uncordon(node: "n2")))
    }

    @Test func agentRollingBackBlocksTheRerun() {
        var m = RolloutMachine(plan: plan)
        let a = m.start(
            RT.start(["n1", "n2"], progress: progress(["n1": .init(step: .waitReady, applySerial: 5)])) {
                $0 == "n1" ? RT.status($0, files: newFiles, operation: op(.rollingBack)) : RT.status($0)
            })
        #expect(a.failure?.kind == .rolledBack)
        #expect(a.failure?.message.contains("rolling back apply 5") == true)
    }
}
