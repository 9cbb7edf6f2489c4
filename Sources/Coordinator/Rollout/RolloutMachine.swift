import Foundation
import NK3Protocol

/// The rollout as a pure state machine: the executor feeds it inputs (what happened) and carries out the
/// actions it returns. No I/O and no clocks in here: waits and timeouts belong to the executor, which
/// reports them as inputs (`.timedOut`). Modelled on async-http-client's connection-pool state machine
/// (the shape of async-http-client's HTTPConnectionPool+StateMachine).
///
/// Per node (kind `apply`, action `boot`):
/// send → rebuild → [unchanged: done] → drain → reboot → agent back with a NEW boot id → kubelet Ready →
/// uncordon → gates (Ceph fresh since the node came back) → confirm.
/// Action `switch`: send → rebuild → kubelet Ready → gates → confirm (no drain).
/// Kind `reboot`: drain → reboot → new boot id → Ready → uncordon → gates.
///
/// Each node's steps come from `NodePipeline` (one full sequence, filtered); which node starts and when the
/// gates run is `RolloutScheduler`'s (the concurrency rules of the disruption budget); what a rerun finds on
/// each node is classified in `RolloutMachine+Resume.swift`; the words people read are `RolloutMessages`'.
/// With budget 1 the schedule is the plain sequence: gates, node 1, gates, node 2, …
///
/// Any failure aborts the whole rollout with one `RolloutFailure`. A failed node is never uncordoned by
/// nk3 while unhealthy and never confirmed, so its agent rolls itself back at its confirm deadline.
public struct RolloutMachine: Sendable {
    enum Phase: Sendable, Hashable { case idle, running, finished }

    /// The plan being rolled out.
    public let plan: RolloutPlan
    private var phase: Phase = .idle
    var nodes: [String: RolloutPlan.Node] = [:]
    private var running: [String: NodeRun] = [:]
    private var schedule = RolloutScheduler(order: [], budget: 1, servers: [], serverLimit: 0)
    private var done: [String: String] = [:]
    private var lastSaved: RolloutProgress?
    private var summary = RolloutSummary()
    private var fingerprint = ""
    /// Why the rollout stops between nodes once the nodes in flight have finished (a refused start).
    private var stopping: RolloutFailure?

    /// A machine for `plan`; call `start` first.
    public init(plan: RolloutPlan) { self.plan = plan }

    /// Whether the machine has returned `.done` or `.abort`.
    public var isFinished: Bool { phase == .finished }

    /// Nodes currently in flight, in start order (for tests and status output).
    public var nodesInFlight: [String] { schedule.inFlight }

    /// Whether `node`'s next action is the first step of a node this run starts (not a resumed node's, nor one
    /// brought back): the executor holds only such a node for the maintenance window and the alert gate.
    public func startsFresh(_ node: String) -> Bool {
        guard let run = running[node] else { return false }
        return run.fresh && run.index == 0
    }

    // MARK: - Start

    /// Decides what to do with every node (resume, recover, skip, roll) and returns the first actions.
    public mutating func start(_ s: Start) -> [Action] {
        guard phase == .idle else { return [] }
        phase = .running
        fingerprint = plan.fingerprint
        if let problem = plan.validationProblem() {
            return abort(RolloutFailure(kind: .invalidInput, cause: problem, situation: .invalidPlan))
        }
        let order = plan.order()
        for n in plan.nodes { nodes[n.name] = n }
        schedule = RolloutScheduler(
            order: order, budget: plan.options.disruptionBudget, servers: Set(plan.nodes.filter(\.isServer).map(\.name)),
            serverLimit: plan.maxServersDown)
        let sameRun = s.progress?.planFingerprint == fingerprint
        if sameRun, let p = s.progress { done = p.done.filter { nodes[$0.key] != nil } }

        var actions: [Action] = []
        var unreachable: [String] = []
        for name in order {
            switch classify(nodes[name]!, s, sameRun: sameRun) {
            case .unreachable:
                unreachable.append(name)
            case .blocked(let failure):
                return actions + abort(failure)
            case .unchanged:
                summary.unchanged.append(name)
                actions.append(.notify(RolloutMessages.noAction(name, upgrade: plan.isUpgrade)))
            case .alreadyDone:
                summary.alreadyDone.append(name)
                actions.append(.notify(RolloutMessages.finishedEarlier(name)))
            case .pending:
                if let who = s.cordonedByOthers[name], !plan.options.includeCordoned {
                    // A person's cordon: not drained and rebooted behind their back.
                    summary.skippedCordoned.append(name)
                    actions.append(.notify(RolloutMessages.skippingCordoned(name, by: who)))
                } else {
                    schedule.addPending(name)
                }
            case .run(var run):
                actions.append(
                    .notify(
                        run.recovering
                            ? RolloutMessages.leftCordoned(name, reason: s.cordonedByNK3[name])
                            : RolloutMessages.resuming(name, at: run.current)))
                run.cordonedByUs = s.cordonedByNK3[name] != nil
                running[name] = run
                schedule.addInFlight(name)
            }
        }
        if !unreachable.isEmpty {
            let why = unreachable.map { "\($0) (\(s.unreachable[$0] ?? "no answer"))" }
            return actions
                + abort(
                    RolloutFailure(
                        kind: .unreachable, node: unreachable.first, step: nil,
                        cause: "unreachable: \(why.joined(separator: ", "))", situation: .agentsUnreachable(why)))
        }
        // Quorum: refuse up front rather than half-way (kured#841 cordoned the last control-plane node).
        let serversToTouch = order.filter { schedule.isToBeTouched($0) && nodes[$0]!.isServer }
        if schedule.serverLimit == 0, let first = serversToTouch.first {
            let servers = plan.nodes.filter(\.isServer).count
            guard plan.options.allowQuorumLoss else {
                return actions
                    + abort(
                        RolloutFailure(
                            kind: .invalidInput, node: first, step: nil,
                            cause: RolloutMessages.quorumCause(server: first, servers: servers),
                            situation: .quorumAtRisk(servers: servers)))
            }
            schedule.serverLimit = 1
            actions.append(.notify(RolloutMessages.quorumLossAllowed(servers: servers)))
        }
        // Drains that could only be refused: refuse now, before anything is touched.
        let draining = Set(order.filter { name in
            if let run = running[name] { return run.steps[run.index...].contains(.drain) }
            return schedule.pending.contains(name) && NodePipeline.full(kind: plan.kind, action: nodes[name]!.bundle?.action).reboots
        })
        // The API's dry-run refusals hold in the cluster's state now; while a resumed node is in flight that state
        // includes its own evicted pods, not Ready elsewhere yet, so there its drains wait them out instead.
        let blockers = s.drainBlockers.filter { draining.contains($0.node) && ($0.source == .rules || running.isEmpty) }
        if !blockers.isEmpty {
            return actions
                + abort(
                    RolloutFailure(
                        kind: .invalidInput, node: blockers[0].node, step: nil,
                        cause: "\(blockers.count) pod(s) would stop a drain", situation: .drainBlocked(blockers)))
        }
        // Health first, unless every node left to touch is already disrupted (then its own gates follow).
        schedule.beginWithGates(
            (!schedule.pending.isEmpty || running.values.contains { !$0.inDisruption }) && !plan.options.skipInitialHealth)
        actions += pump()
        return actions
    }

    // MARK: - Inputs

    /// Feeds one input; returns the actions it leads to (possibly none).
    public mutating func handle(_ input: Input) -> [Action] {
        guard phase == .running else { return [] }
        var notes: [Action] = []
        switch input {
        case .bundleAccepted(let name, let receipt):
            guard var run = expect(name, .send) else { return unexpected(input) }
            run.applySerial = receipt.serial
            run.operationID = receipt.operationID
            run.advance()
            running[name] = run

        case .rebuildFinished(let name, let outcome, let at):
            guard var run = expect(name, .rebuild) else { return unexpected(input) }
            switch outcome {
            case .unchanged:
                notes.append(.notify(RolloutMessages.noAction(name, upgrade: plan.isUpgrade)))
                run.steps = Array(run.steps[..<(run.index + 1)])
                run.after = .unchanged
                run.inDisruption = false
                run.advance()
            case .awaitingConfirm:
                if run.action != .boot { run.backAt = at }
                run.advance()
            case .committed:
                run.steps.removeAll { $0 == .confirm }
                run.confirmed = true
                run.advance()
            case .failed(let message):
                return abort(failure(run, kind: .rebuildFailed, step: .rebuild, cause: RolloutMessages.rebuildFailedCause(message)))
            case .rolledBack(let message):
                return abort(failure(run, kind: .rolledBack, step: .rebuild, cause: RolloutMessages.rolledBackCause(message)))
            }
            running[name] = run

        case .drained(let name, let status):
            guard var run = expect(name, .drain) else { return unexpected(input) }
            run.bootIDBeforeReboot = status.bootID
            run.kernelBefore = status.kernel
            run.trialBoot = status.rollbackMode == "trial-boot"
            run.advance()
            running[name] = run

        case .rebootIssued(let name):
            guard var run = expect(name, .reboot) else { return unexpected(input) }
            run.advance()
            running[name] = run

        case .agentReachable(let name, let status, let at):
            guard var run = expect(name, .waitReachable) else { return unexpected(input) }
            if let old = run.bootIDBeforeReboot, status.bootID == old || !status.isBootIDKnown {
                // Answering with the old boot id (or none: an agent that cannot read its machine mid-shutdown)
                // is not a reboot: keep waiting until the reboot timeout.
                run.sawOldBootID = true
                running[name] = run
                return [.waitReachable(node: name, oldBootID: old, sawOldBootID: true)]
            }
            notes.append(.notify(RolloutMessages.reachable(name)))
            run.kernelAfter = status.kernel
            run.bootAfterReboot = NodeBoot(bootID: status.bootID, since: at)
            if let serial = run.applySerial, let last = status.lastResult, last.serial == serial,
                last.outcome == .rolledBack
            {
                let cause = RolloutMessages.cameBackRolledBackCause(serial: serial, message: last.message)
                return notes + abort(failure(run, kind: .rolledBack, step: .waitReachable, cause: cause))
            }
            run.advance()
            running[name] = run

        case .agentWentDown(let name):
            // It answered once more with its old boot just before going down: the reboot is happening. If it
            // never comes back, that is a node that did not come back, not a reboot that did not happen.
            guard var run = expect(name, .waitReachable) else { return unexpected(input) }
            run.sawOldBootID = false
            running[name] = run
            return [.waitReachable(node: name, oldBootID: run.bootIDBeforeReboot, sawOldBootID: false)]

        case .nodeReady(let name, let at):
            guard var run = expect(name, .waitReady) else { return unexpected(input) }
            notes.append(.notify(RolloutMessages.kubeletReady(name)))
            run.backAt = at
            run.advance()
            running[name] = run

        case .uncordoned(let name, let wasOurs, let at):
            guard var run = expect(name, .uncordon) else { return unexpected(input) }
            notes.append(.notify(RolloutMessages.uncordoned(name, wasOurs: wasOurs)))
            run.cordonedByUs = false
            run.backAt = at
            run.inDisruption = false
            run.advance()
            running[name] = run

        case .gatesPassed:
            guard schedule.gatesRunning else { return unexpected(input) }
            for name in schedule.gatesPassed() {
                guard var run = running[name], run.current == .gates else { continue }
                run.advance()
                running[name] = run
            }

        case .confirmed(let name):
            guard var run = expect(name, .confirm) else { return unexpected(input) }
            // The event log's explicit end of the node's gates-and-confirm (RolloutTimeline, LiveProgress).
            notes.append(.notify(RolloutMessages.confirmed(name, serial: run.applySerial)))
            run.confirmed = true
            run.advance()
            running[name] = run

        case .startRefused(let name, let failure):
            guard let run = running[name], run.fresh, run.index == 0, run.issued else { return unexpected(input) }
            running[name] = nil
            schedule.stopStarting(unstarting: name)
            if stopping == nil {
                stopping = failure
                // The nodes underway (not those whose start is still being decided) finish first.
                let others = schedule.inFlight.filter { running[$0].map { !($0.fresh && $0.index == 0) } ?? false }
                if !others.isEmpty { notes.append(.notify(RolloutMessages.stoppingAfter(others, cause: failure.cause))) }
            }

        case .failed(let name, let step, let kind, let cause):
            if let name, let run = running[name] {
                return abort(failure(run, kind: kind, step: step, cause: cause))
            }
            return abort(gateFailure(kind: kind, cause: cause))

        case .timedOut(let name, let step, let after):
            guard let name, let run = running[name] else {
                return abort(
                    gateFailure(
                        kind: .timeout, cause: RolloutMessages.timeoutCause(step: .gates, after: after, sawOldBootID: false)))
            }
            let cause = RolloutMessages.timeoutCause(
                step: step, after: after, sawOldBootID: run.sawOldBootID, trialBoot: run.trialBoot)
            // A reboot that never shows is a timeout; a node that went down and stayed down is unreachable.
            let kind: RolloutFailure.Kind = step == .waitReachable && !run.sawOldBootID ? .unreachable : .timeout
            return abort(failure(run, kind: kind, step: step, cause: cause))
        }
        return notes + pump()
    }

    private func expect(_ name: String, _ step: RolloutStep) -> NodeRun? {
        guard let run = running[name], run.current == step, run.issued else { return nil }
        return run
    }

    private mutating func unexpected(_ input: Input) -> [Action] {
        abort(RolloutFailure(kind: .other, cause: "internal error: unexpected input \(input)", situation: .internalError))
    }

    // MARK: - Handing out actions

    /// Hands out every action that may run now; finishes nodes and the rollout.
    private mutating func pump() -> [Action] {
        var actions: [Action] = []
        var progressed = true
        while progressed && phase == .running {
            progressed = false
            // Finished nodes leave the pipeline.
            for name in schedule.inFlight where running[name]?.current == nil {
                actions += complete(name)
                progressed = true
            }
            // Start new nodes (all that may start now, before any of them disrupts and clears `verified`).
            while let next = schedule.startNext() {
                let node = nodes[next]!
                var run = NodeRun(node: node, steps: NodePipeline.full(kind: plan.kind, action: node.bundle?.action).steps)
                run.fresh = true
                running[next] = run
                progressed = true
            }
            // Issue every step that may run.
            let nodesAtGates = running.values.contains { $0.current == .gates }
            for name in schedule.inFlight {
                guard var run = running[name], let step = run.current, !run.issued, step != .gates else { continue }
                let entering = run.isDisruptive(step) && !run.inDisruption
                if entering && !schedule.mayEnterDisruption(nodesAtGates: nodesAtGates) { continue }
                if step == .confirm && run.applySerial == nil {
                    run.advance()
                    running[name] = run
                    progressed = true
                    continue
                }
                run.issued = true
                if run.isDisruptive(step) {
                    run.inDisruption = true
                    schedule.enteredDisruption()
                }
                if step == .drain { run.cordonedByUs = true }
                running[name] = run
                actions += issue(run, step)
                progressed = true
            }
        }
        guard phase == .running else { return actions }
        // A refused start: stop between nodes, once every node in flight has finished its whole sequence.
        if let stopping, schedule.inFlight.isEmpty, !schedule.gatesRunning {
            return actions + abort(stopping)
        }
        // Gates: only with nothing disrupted, when something needs them.
        let waiting = schedule.inFlight.filter { running[$0]?.current == .gates }
        if schedule.startGates(waiting: waiting, anyInDisruption: running.values.contains { $0.inDisruption }) {
            actions.append(.runGates(since: waiting.compactMap { running[$0]?.backAt }.max()))
        }
        if schedule.isIdle {
            phase = .finished
            if !summary.skippedCordoned.isEmpty {
                actions.append(.notify(RolloutMessages.skippedCordoned(summary.skippedCordoned)))
            }
            actions.append(.notify(RolloutMessages.complete(summary)))
            actions.append(.done(summary))
            return actions
        }
        // Saved before the step it records starts, but only when a rerun would act differently on it: a step
        // change within one resume class (see `RolloutProgress.resumeView`) is not worth a Kubernetes write.
        let snapshot = progress
        if snapshot.resumeView != lastSaved?.resumeView {
            lastSaved = snapshot
            actions.insert(.saveProgress(snapshot), at: 0)
        }
        return actions
    }

    private func issue(_ run: NodeRun, _ step: RolloutStep) -> [Action] {
        let name = run.name
        switch step {
        case .send: return [.notify(RolloutMessages.rebuilding(name)), .sendBundle(node: name, bundle: nodes[name]!.bundle!)]
        case .rebuild: return [.waitRebuild(node: name, operationID: run.operationID, applySerial: run.applySerial)]
        case .drain: return [.notify(RolloutMessages.draining(name)), .drain(node: name)]
        case .reboot: return [.notify(RolloutMessages.rebooting(name)), .reboot(node: name)]
        case .waitReachable: return [.waitReachable(node: name, oldBootID: run.bootIDBeforeReboot, sawOldBootID: false)]
        case .waitReady: return [.waitReady(node: name, boot: run.bootAfterReboot)]
        case .uncordon: return [.uncordon(node: name)]
        case .confirm: return [.confirm(node: name, applySerial: run.applySerial!)]
        case .gates: return []  // one gate run for every node waiting at its gates: `pump` starts it
        }
    }

    private mutating func complete(_ name: String) -> [Action] {
        guard let run = running.removeValue(forKey: name) else { return [] }
        schedule.finished(name)
        if run.recovering {
            summary.recovered.append(name)
            switch run.after {
            case .pending:
                schedule.addPending(name)
                return []
            case .unchanged:
                summary.unchanged.append(name)
                return [.notify(RolloutMessages.noAction(name, upgrade: plan.isUpgrade))]
            case .alreadyDone:
                summary.alreadyDone.append(name)
            case .finish:
                break
            }
            return []
        }
        done[name] = nodes[name]!.desiredHash ?? ""
        if run.after == .unchanged {
            summary.unchanged.append(name)
            return []
        }
        summary.updated.append(name)
        guard let before = run.kernelBefore, let after = run.kernelAfter, before != after else { return [] }
        summary.kernelChanges[name] = .init(from: before, to: after)
        return [.notify(RolloutMessages.kernelUpgraded(name, from: before, to: after))]
    }

    /// The progress record for the current state.
    public var progress: RolloutProgress {
        var inFlight: [String: RolloutProgress.InFlight] = [:]
        for (name, run) in running {
            inFlight[name] = .init(
                step: run.current ?? run.steps.last ?? .gates, applySerial: run.applySerial,
                operationID: run.operationID, bootIDBeforeReboot: run.bootIDBeforeReboot, kernelBefore: run.kernelBefore)
        }
        return RolloutProgress(planFingerprint: fingerprint, done: done, inFlight: inFlight)
    }

    // MARK: - Failures

    private mutating func abort(_ failure: RolloutFailure) -> [Action] {
        phase = .finished
        var actions: [Action] = [.notify(RolloutMessages.failed(failure))]
        // Save only if this run already owns the stored record; an abort before the first save (bad input,
        // unreachable agent, quorum) leaves an earlier run's progress as it was.
        if lastSaved != nil {
            let snapshot = progress
            if snapshot != lastSaved {
                lastSaved = snapshot
                actions.append(.saveProgress(snapshot))
            }
        }
        actions.append(.abort(failure))
        return actions
    }

    private func failure(_ run: NodeRun, kind: RolloutFailure.Kind, step: RolloutStep, cause: String) -> RolloutFailure {
        let unconfirmed = run.confirmed || kind == .rebuildFailed || kind == .rolledBack ? nil : run.applySerial
        let aftermath = RolloutFailure.NodeAftermath(
            unconfirmedSerial: unconfirmed, leftCordoned: run.cordonedByUs,
            alsoInFlight: schedule.inFlight.filter { $0 != run.name })
        return RolloutFailure(kind: kind, node: run.name, step: step, cause: cause, situation: .nodeFailed(aftermath))
    }

    private func gateFailure(kind: RolloutFailure.Kind, cause: String) -> RolloutFailure {
        let waiting = schedule.gateNodes.isEmpty ? schedule.inFlight : schedule.gateNodes
        return RolloutFailure(
            kind: kind, node: waiting.first, step: .gates, cause: cause,
            situation: .gatesFailed(waiting: waiting, updated: summary.updated))
    }
}
