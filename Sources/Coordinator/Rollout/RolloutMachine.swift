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
/// Concurrency (disruption budget > 1), decided here and documented in `RolloutPlan.Options`:
/// - at most `disruptionBudget` nodes are in flight (started, not yet finished), and at most
///   `RolloutPlan.maxServersDown` of them are k3s servers (etcd quorum, https://docs.k3s.io/datastore/ha-embedded);
/// - a node starts only while the cluster is *verified*: the health gates passed and no node has entered
///   disruption since (so "gates before each new node" holds with any budget);
/// - gates run only while no node is disrupted (between its drain and its uncordon, or while a `switch`
///   activates), and a node enters disruption only while no gate run is pending or running — so a gate
///   run never sees a node nk3 is still taking down, and never starves.
/// With budget 1 this is the plain sequence: gates, node 1, gates, node 2, …
///
/// Any failure aborts the whole rollout with one `RolloutFailure`. A failed node is never uncordoned by
/// nk3 while unhealthy and never confirmed, so its agent rolls itself back at its confirm deadline.
public struct RolloutMachine: Sendable {
    /// What the executor must do next. Node actions may run concurrently (one per node at a time).
    public enum Action: Sendable, Hashable {
        /// Tell people (human line / JSON event).
        case notify(RolloutNotice)
        /// Store progress before the actions that follow in the same batch.
        case saveProgress(RolloutProgress)
        /// Submit the signed apply envelope. Answer `.bundleAccepted`.
        case sendBundle(node: String, bundle: ApplyBundle)
        /// Poll the apply until it finished rebuilding. Answer `.rebuildFinished` (or `.timedOut`).
        case waitRebuild(node: String, operationID: String?, applySerial: UInt64?)
        /// Cordon (as nk3's) and drain; then read the agent's status. Answer `.drained`.
        case drain(node: String)
        /// Ask the agent to reboot. Answer `.rebootIssued`.
        case reboot(node: String)
        /// Poll the agent's status, ignoring errors, until it answers. Answer `.agentReachable` with that status
        /// (the machine decides whether the boot id is new and may ask again), or `.timedOut`.
        case waitReachable(node: String, oldBootID: String?)
        /// Poll kubelet Ready until true. Answer `.nodeReady` or `.timedOut`.
        case waitReady(node: String)
        /// Uncordon if nk3 cordoned it. Answer `.uncordoned`.
        case uncordon(node: String)
        /// Run every health gate; Ceph only counts if checked after `since`. Answer `.gatesPassed`.
        case runGates(since: Date?)
        /// Submit the signed confirm for the apply with `applySerial`. Answer `.confirmed`.
        case confirm(node: String, applySerial: UInt64)
        /// Stop: the rollout failed. Nothing else follows.
        case abort(RolloutFailure)
        /// Stop: every node is done.
        case done(RolloutSummary)
    }

    /// What happened, as reported by the executor.
    public enum Input: Sendable, Hashable {
        case bundleAccepted(node: String, receipt: EnvelopeReceipt)
        case rebuildFinished(node: String, outcome: RebuildOutcome, at: Date)
        /// Drained; `status` is the agent's status right before the reboot (boot id, kernel).
        case drained(node: String, status: AgentStatus)
        case rebootIssued(node: String)
        /// The agent answered; `at` is when.
        case agentReachable(node: String, status: AgentStatus, at: Date)
        case nodeReady(node: String, at: Date)
        case uncordoned(node: String, wasOurs: Bool, at: Date)
        case gatesPassed(at: Date)
        case confirmed(node: String)
        /// A step failed (node nil for gates).
        case failed(node: String?, step: RolloutStep, kind: RolloutFailure.Kind, cause: String)
        /// A wait ran out (node nil for gates).
        case timedOut(node: String?, step: RolloutStep, after: Duration)
    }

    /// What the executor learned before the first action: the agents' status, nk3's cordons, saved progress.
    public struct Start: Sendable, Hashable {
        /// Status of every agent that answered.
        public var statuses: [String: AgentStatus]
        /// Agents that did not answer → why.
        public var unreachable: [String: String]
        /// Nodes cordoned by nk3 (annotation) → recorded reason.
        public var cordonedByNK3: [String: String]
        /// Progress saved by an earlier run, if any.
        public var progress: RolloutProgress?
        /// When the rollout started (Ceph must be fresh after this for recovered nodes).
        public var at: Date

        /// Makes a start snapshot.
        public init(
            statuses: [String: AgentStatus], unreachable: [String: String] = [:],
            cordonedByNK3: [String: String] = [:], progress: RolloutProgress? = nil, at: Date
        ) {
            self.statuses = statuses
            self.unreachable = unreachable
            self.cordonedByNK3 = cordonedByNK3
            self.progress = progress
            self.at = at
        }
    }

    /// One node in flight.
    struct NodeRun: Sendable, Hashable {
        enum After: Sendable, Hashable { case finish, pending, unchanged, alreadyDone }
        var name: String
        var isServer: Bool
        var steps: [RolloutStep]
        var index = 0
        /// The current step's action was handed out and its answer is outstanding.
        var issued = false
        /// Between entering a disruptive step and leaving the last one.
        var inDisruption = false
        /// Recovering a node a previous run left cordoned; `after` says what follows.
        var recovering = false
        var after: After = .finish
        var action: RebuildAction?
        var applySerial: UInt64?
        var operationID: String?
        var bootIDBeforeReboot: String?
        var kernelBefore: String?
        var kernelAfter: String?
        var backAt: Date?
        var sawOldBootID = false
        var cordonedByUs = false
        var confirmed = false

        var current: RolloutStep? { index < steps.count ? steps[index] : nil }

        /// Whether `step` takes the node (or its workloads) down.
        func isDisruptive(_ step: RolloutStep) -> Bool {
            switch step {
            case .drain, .reboot, .waitReachable, .waitReady, .uncordon: return true
            case .send, .rebuild: return action == .switch || action == .test
            case .gates, .confirm: return false
            }
        }
    }

    enum Phase: Sendable, Hashable { case idle, running, finished }

    /// The plan being rolled out.
    public let plan: RolloutPlan
    private var phase: Phase = .idle
    private var order: [String] = []
    private var nodes: [String: RolloutPlan.Node] = [:]
    private var pending: Set<String> = []
    private var running: [String: NodeRun] = [:]
    private var runningOrder: [String] = []
    private var done: [String: String] = [:]
    private var initialGatesPending = false
    private var gatesRunning = false
    private var gateNodes: [String] = []
    private var verified = true
    private var lastSaved: RolloutProgress?
    private var summary = RolloutSummary()
    private var serverLimit = 0
    private var fingerprint = ""

    /// A machine for `plan`; call `start` first.
    public init(plan: RolloutPlan) { self.plan = plan }

    /// Whether the machine has returned `.done` or `.abort`.
    public var isFinished: Bool { phase == .finished }

    /// Nodes currently in flight, in start order (for tests and status output).
    public var nodesInFlight: [String] { runningOrder }

    /// The step each in-flight node is at.
    public func currentStep(of node: String) -> RolloutStep? { running[node]?.current }

    // MARK: - Start

    /// Decides what to do with every node (resume, recover, skip, roll) and returns the first actions.
    public mutating func start(_ s: Start) -> [Action] {
        guard phase == .idle else { return [] }
        phase = .running
        fingerprint = plan.fingerprint
        if let problem = plan.validationProblem() {
            return abort(RolloutFailure(kind: .invalidInput, cause: problem, message: "invalid rollout: \(problem)"))
        }
        order = plan.order()
        for n in plan.nodes { nodes[n.name] = n }
        let sameRun = s.progress?.planFingerprint == fingerprint
        if sameRun, let p = s.progress { done = p.done.filter { nodes[$0.key] != nil } }

        var actions: [Action] = []
        var unreachable: [String] = []
        for name in order {
            let node = nodes[name]!
            switch classify(node, s, sameRun: sameRun) {
            case .unreachable:
                unreachable.append(name)
            case .blocked(let failure):
                return actions + abort(failure)
            case .unchanged:
                summary.unchanged.append(name)
                actions.append(.notify(noActionNotice(name)))
            case .alreadyDone:
                summary.alreadyDone.append(name)
                actions.append(
                    .notify(RolloutNotice(node: name, phase: .rollout, status: .skipped,
                                          message: "\(name) was finished by the interrupted rollout; skipping")))
            case .pending:
                pending.insert(name)
            case .run(var run):
                if run.recovering {
                    let reason = s.cordonedByNK3[name].map { " (\($0))" } ?? ""
                    actions.append(
                        .notify(RolloutNotice(
                            node: name, phase: .rollout, status: .warning,
                            message: "\(name) was left cordoned by nk3\(reason); bringing it back")))
                } else {
                    actions.append(
                        .notify(RolloutNotice(
                            node: name, phase: .rollout, status: .info,
                            message: "Resuming \(name) at \(run.current?.rawValue ?? "the end")")))
                }
                run.cordonedByUs = s.cordonedByNK3[name] != nil
                running[name] = run
                runningOrder.append(name)
            }
        }
        if !unreachable.isEmpty {
            let why = unreachable.map { "\($0) (\(s.unreachable[$0] ?? "no answer"))" }.joined(separator: ", ")
            let failure = RolloutFailure(
                kind: .unreachable, node: unreachable.first, step: nil,
                cause: "unreachable: \(why)",
                message: "rollout not started: agent unreachable on \(why). Every agent must answer before a rollout "
                    + "starts; check that nk3-agent runs on the node and that its port is open, then rerun.")
            return actions + abort(failure)
        }
        // Quorum: refuse up front rather than half-way (kured#841 cordoned the last control-plane node).
        let serversToTouch = order.filter { (pending.contains($0) || running[$0] != nil) && nodes[$0]!.isServer }
        serverLimit = plan.maxServersDown
        if serverLimit == 0, !serversToTouch.isEmpty {
            let servers = plan.nodes.filter(\.isServer).count
            if plan.options.allowQuorumLoss {
                serverLimit = 1
                actions.append(
                    .notify(RolloutNotice(
                        node: nil, phase: .preflight, status: .warning,
                        message: "Rolling k3s servers with --allow-quorum-loss: with \(servers) server(s), etcd loses "
                            + "quorum while one is down")))
            } else {
                let cause =
                    "k3s server \(serversToTouch[0]) needs a restart, but with \(servers) server(s) etcd keeps quorum "
                    + "only while ⌊(\(servers)−1)/2⌋ = 0 servers are down (https://docs.k3s.io/datastore/ha-embedded)"
                return actions
                    + abort(
                        RolloutFailure(
                            kind: .invalidInput, node: serversToTouch[0], step: nil, cause: cause,
                            message: "rollout not started: \(cause). Add servers (an odd number, 3 or more), or pass "
                                + "--allow-quorum-loss to roll servers one at a time anyway."))
            }
        }
        // Health first, unless every node left to touch is already disrupted (then its own gates follow).
        initialGatesPending =
            (!pending.isEmpty || running.values.contains { !$0.inDisruption }) && !plan.options.skipInitialHealth
        verified = true
        actions += pump()
        return actions
    }

    private enum Classified {
        case unreachable, blocked(RolloutFailure), unchanged, alreadyDone, pending, run(NodeRun)
    }

    private func newRun(_ node: RolloutPlan.Node) -> NodeRun {
        NodeRun(name: node.name, isServer: node.isServer, steps: [], action: node.bundle?.action)
    }

    private func fullSteps(_ node: RolloutPlan.Node) -> [RolloutStep] {
        switch plan.kind {
        case .reboot:
            return [.drain, .reboot, .waitReachable, .waitReady, .uncordon, .gates]
        case .apply:
            if node.bundle?.action == .boot {
                return [.send, .rebuild, .drain, .reboot, .waitReachable, .waitReady, .uncordon, .gates, .confirm]
            }
            return [.send, .rebuild, .waitReady, .gates, .confirm]
        }
    }

    /// Steps from `step` on in the node's full pipeline.
    private func steps(_ node: RolloutPlan.Node, from step: RolloutStep) -> [RolloutStep] {
        let all = fullSteps(node)
        guard let i = all.firstIndex(of: step) else { return all }
        return Array(all[i...])
    }

    private func classify(_ node: RolloutPlan.Node, _ s: Start, sameRun: Bool) -> Classified {
        let name = node.name
        let rec = s.progress?.inFlight[name]
        let cordoned = s.cordonedByNK3[name] != nil
        var run = newRun(node)
        run.applySerial = rec?.applySerial
        run.operationID = rec?.operationID
        run.bootIDBeforeReboot = rec?.bootIDBeforeReboot
        run.kernelBefore = rec?.kernelBefore

        guard let status = s.statuses[name] else {
            // Unreachable is expected only for a node nk3 was rebooting when the last run died.
            if let rec, [.reboot, .waitReachable].contains(rec.step) {
                run.steps = steps(node, from: .waitReachable)
                run.inDisruption = true
                return .run(run)
            }
            return .unreachable
        }

        // 1. An apply of ours is still open on the agent: pick it up where it is.
        if plan.kind == .apply, let bundle = node.bundle, let op = status.operation, op.kind == "apply",
            rec?.applySerial == op.serial || status.configHash == node.desiredHash
        {
            run.applySerial = op.serial
            run.operationID = op.id
            run.action = op.action ?? bundle.action
            switch op.phase {
            case .received, .staged, .rebuilding:
                run.steps = steps(node, from: .rebuild)
                if run.isDisruptive(.rebuild) { run.inDisruption = true }
                return .run(run)
            case .awaitingConfirm:
                if run.action == .boot {
                    let before = op.bootIDAtRebuild ?? rec?.bootIDBeforeReboot
                    if let before, status.isBootIDKnown, status.bootID != before {
                        run.bootIDBeforeReboot = before
                        run.kernelAfter = status.kernel
                        run.steps = [.waitReady] + (cordoned ? [.uncordon] : []) + [.gates, .confirm]
                        run.inDisruption = true
                    } else if let pending = status.pendingReboot, pending.bootID == status.bootID {
                        // The killed run's reboot was accepted and is about to happen: wait for the new boot
                        // rather than drain and reboot again under a machine that is going down.
                        run.bootIDBeforeReboot = status.bootID
                        run.steps = steps(node, from: .waitReachable)
                        run.inDisruption = true
                    } else if cordoned {
                        run.steps = steps(node, from: .drain)
                        run.inDisruption = true
                    } else {
                        run.steps = steps(node, from: .drain)
                    }
                } else {
                    run.steps = [.waitReady] + (cordoned ? [.uncordon] : []) + [.gates, .confirm]
                    run.inDisruption = true
                }
                return .run(run)
            case .rollingBack:
                return .blocked(
                    RolloutFailure(
                        kind: .rolledBack, node: name, step: rec?.step,
                        cause: "its agent is rolling back apply \(op.serial) (the confirm deadline passed while no "
                            + "coordinator was running)",
                        message: "rollout not started: the agent on \(name) is rolling back apply \(op.serial) (its "
                            + "confirm deadline passed while no coordinator was running). Rerun nk3 once the rollback "
                            + "finished (`nk3 status` shows it)."))
            case .committed, .failed, .rolledBack:
                break
            }
        }

        // 2. What counts as done now.
        var after: NodeRun.After = .pending
        if let rec, let serial = rec.applySerial, let last = status.lastResult, last.serial == serial,
            last.outcome == .committed || last.outcome == .unchanged
        {
            after = .alreadyDone
        } else if sameRun, let h = s.progress?.done[name], node.desiredHash == nil || status.configHash == h {
            after = .alreadyDone
        } else if plan.kind == .apply, let b = node.bundle, !b.upgrade, status.configHash == node.desiredHash {
            after = .unchanged
        }

        // 3. A reboot rollout killed mid-node.
        if plan.kind == .reboot, let rec, after == .pending {
            if let before = rec.bootIDBeforeReboot, status.isBootIDKnown, status.bootID != before {
                run.kernelAfter = status.kernel
                run.steps = [.waitReady] + (cordoned ? [.uncordon] : []) + [.gates]
                run.inDisruption = true
                return .run(run)
            }
            if let pending = status.pendingReboot, pending.bootID == status.bootID,
                [.reboot, .waitReachable].contains(rec.step)
            {
                run.bootIDBeforeReboot = status.bootID  // accepted, about to go down: wait for the new boot
                run.steps = steps(node, from: .waitReachable)
                run.inDisruption = true
                return .run(run)
            }
            if [.drain, .reboot, .waitReachable].contains(rec.step), cordoned {
                run.steps = steps(node, from: .drain)
                run.inDisruption = true
                return .run(run)
            }
        }

        // 4. Left cordoned by nk3 (killed or failed run): bring it back first, never uncordoned before Ready.
        if cordoned {
            run.steps = [.waitReady, .uncordon, .gates]
            run.recovering = true
            run.inDisruption = true
            run.after = after
            return .run(run)
        }
        switch after {
        case .pending, .finish: return .pending
        case .unchanged: return .unchanged
        case .alreadyDone: return .alreadyDone
        }
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
            advance(&run)
            running[name] = run

        case .rebuildFinished(let name, let outcome, let at):
            guard var run = expect(name, .rebuild) else { return unexpected(input) }
            switch outcome {
            case .unchanged:
                notes.append(.notify(noActionNotice(name)))
                run.steps = Array(run.steps[..<(run.index + 1)])
                run.after = .unchanged
                run.inDisruption = false
                advance(&run)
            case .awaitingConfirm:
                if run.action != .boot { run.backAt = at }
                advance(&run)
            case .committed:
                run.steps.removeAll { $0 == .confirm }
                run.confirmed = true
                advance(&run)
            case .failed(let message):
                return abort(
                    failure(
                        run, kind: .rebuildFailed, step: .rebuild,
                        cause: "nixos-rebuild failed: \(message)"))
            case .rolledBack(let message):
                return abort(failure(run, kind: .rolledBack, step: .rebuild, cause: "the agent rolled back: \(message)"))
            }
            running[name] = run

        case .drained(let name, let status):
            guard var run = expect(name, .drain) else { return unexpected(input) }
            run.bootIDBeforeReboot = status.bootID
            run.kernelBefore = status.kernel
            advance(&run)
            running[name] = run

        case .rebootIssued(let name):
            guard var run = expect(name, .reboot) else { return unexpected(input) }
            advance(&run)
            running[name] = run

        case .agentReachable(let name, let status, _):
            guard var run = expect(name, .waitReachable) else { return unexpected(input) }
            if let old = run.bootIDBeforeReboot, status.bootID == old || !status.isBootIDKnown {
                // Answering with the old boot id (or none: an agent that cannot read its machine mid-shutdown)
                // is not a reboot: keep waiting until the reboot timeout.
                run.sawOldBootID = true
                running[name] = run
                return [.waitReachable(node: name, oldBootID: old)]
            }
            notes.append(.notify(RolloutNotice(node: name, phase: .reachable, status: .ok, message: "\(name) is reachable")))
            run.kernelAfter = status.kernel
            if let serial = run.applySerial, let last = status.lastResult, last.serial == serial,
                last.outcome == .rolledBack
            {
                return notes
                    + abort(
                        failure(
                            run, kind: .rolledBack, step: .waitReachable,
                            cause: "it came back in its previous generation: the agent rolled back apply \(serial) "
                                + "(\(last.message))"))
            }
            advance(&run)
            running[name] = run

        case .nodeReady(let name, let at):
            guard var run = expect(name, .waitReady) else { return unexpected(input) }
            notes.append(.notify(RolloutNotice(node: name, phase: .ready, status: .ok, message: "kubelet is ready on \(name)")))
            run.backAt = at
            advance(&run)
            running[name] = run

        case .uncordoned(let name, let wasOurs, let at):
            guard var run = expect(name, .uncordon) else { return unexpected(input) }
            if wasOurs {
                notes.append(.notify(RolloutNotice(node: name, phase: .uncordon, status: .ok, message: "\(name) uncordoned")))
            } else {
                notes.append(
                    .notify(RolloutNotice(
                        node: name, phase: .uncordon, status: .warning,
                        message: "\(name) was cordoned by someone else before nk3 drained it; left cordoned")))
            }
            run.cordonedByUs = false
            run.backAt = at
            run.inDisruption = false
            advance(&run)
            running[name] = run

        case .gatesPassed:
            guard gatesRunning else { return unexpected(input) }
            gatesRunning = false
            initialGatesPending = false
            verified = true
            for name in gateNodes {
                guard var run = running[name], run.current == .gates else { continue }
                advance(&run)
                running[name] = run
            }
            gateNodes = []

        case .confirmed(let name):
            guard var run = expect(name, .confirm) else { return unexpected(input) }
            run.confirmed = true
            advance(&run)
            running[name] = run

        case .failed(let name, let step, let kind, let cause):
            if let name, let run = running[name] {
                return abort(failure(run, kind: kind, step: step, cause: cause))
            }
            return abort(gateFailure(kind: kind, cause: cause))

        case .timedOut(let name, let step, let after):
            let d = RolloutDurations.describe(after)
            guard let name, let run = running[name] else {
                return abort(gateFailure(kind: .timeout, cause: "the health gates did not all pass within \(d)"))
            }
            switch step {
            case .rebuild:
                return abort(failure(run, kind: .timeout, step: step, cause: "nixos-rebuild did not finish within \(d)"))
            case .drain:
                return abort(failure(run, kind: .timeout, step: step, cause: "draining did not finish within \(d)"))
            case .waitReachable:
                if run.sawOldBootID {
                    return abort(
                        failure(
                            run, kind: .timeout, step: step,
                            cause: "its agent kept answering with the old boot id for \(d): the reboot did not happen"))
                }
                return abort(
                    failure(run, kind: .unreachable, step: step, cause: "its agent did not come back within \(d) of the reboot"))
            case .waitReady:
                return abort(failure(run, kind: .timeout, step: step, cause: "kubelet did not become Ready within \(d)"))
            default:
                return abort(failure(run, kind: .timeout, step: step, cause: "\(step.rawValue) did not finish within \(d)"))
            }
        }
        return notes + pump()
    }

    private func expect(_ name: String, _ step: RolloutStep) -> NodeRun? {
        guard let run = running[name], run.current == step, run.issued else { return nil }
        return run
    }

    private mutating func unexpected(_ input: Input) -> [Action] {
        abort(RolloutFailure(kind: .other, cause: "internal error: unexpected input \(input)"))
    }

    private func advance(_ run: inout NodeRun) {
        run.index += 1
        run.issued = false
        if let next = run.current, !run.isDisruptive(next) { run.inDisruption = false }
    }

    // MARK: - Scheduling

    /// Hands out every action that may run now; finishes nodes and the rollout.
    private mutating func pump() -> [Action] {
        var actions: [Action] = []
        var progressed = true
        while progressed && phase == .running {
            progressed = false
            // Finished nodes leave the pipeline.
            for name in runningOrder where running[name]?.current == nil {
                actions += complete(name)
                progressed = true
            }
            // Start new nodes (all that may start now, before any of them disrupts and clears `verified`).
            while let next = nextStartable() {
                pending.remove(next)
                var run = newRun(nodes[next]!)
                run.steps = fullSteps(nodes[next]!)
                running[next] = run
                runningOrder.append(next)
                progressed = true
            }
            // Issue every step that may run.
            for name in runningOrder {
                guard var run = running[name], let step = run.current, !run.issued, step != .gates else { continue }
                let entering = run.isDisruptive(step) && !run.inDisruption
                if entering && disruptionBlocked { continue }
                if step == .confirm && run.applySerial == nil {
                    advance(&run)
                    running[name] = run
                    progressed = true
                    continue
                }
                run.issued = true
                if run.isDisruptive(step) {
                    run.inDisruption = true
                    verified = false
                }
                if step == .drain { run.cordonedByUs = true }
                running[name] = run
                actions += issue(run, step)
                progressed = true
            }
        }
        guard phase == .running else { return actions }
        // Gates: only with nothing disrupted, when something needs them.
        let waiting = runningOrder.filter { running[$0]?.current == .gates }
        let wantStart = !verified && !pending.isEmpty && runningOrder.count < plan.options.disruptionBudget
        if !gatesRunning, !anyInDisruption, initialGatesPending || !waiting.isEmpty || wantStart {
            gatesRunning = true
            gateNodes = waiting
            let since = waiting.compactMap { running[$0]?.backAt }.max()
            actions.append(.runGates(since: since))
        }
        if pending.isEmpty && running.isEmpty && !gatesRunning {
            phase = .finished
            actions.append(
                .notify(RolloutNotice(
                    node: nil, phase: .rollout, status: .ok,
                    message: "Rollout complete: \(summary.updated.count) updated, \(summary.unchanged.count) unchanged"
                        + (summary.alreadyDone.isEmpty ? "" : ", \(summary.alreadyDone.count) already done"))))
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

    private var anyInDisruption: Bool { running.values.contains { $0.inDisruption } }

    /// A node may enter disruption only while no gate run is due or running.
    private var disruptionBlocked: Bool {
        gatesRunning || initialGatesPending || running.values.contains { $0.current == .gates }
    }

    private func nextStartable() -> String? {
        guard !pending.isEmpty, verified, !gatesRunning, !initialGatesPending,
            runningOrder.count < plan.options.disruptionBudget
        else { return nil }
        let serversInFlight = running.values.filter(\.isServer).count
        return order.first { name in
            pending.contains(name) && (!nodes[name]!.isServer || serversInFlight < serverLimit)
        }
    }

    private func issue(_ run: NodeRun, _ step: RolloutStep) -> [Action] {
        let name = run.name
        switch step {
        case .send:
            return [
                .notify(RolloutNotice(node: name, phase: .rebuild, status: .started, message: "Rebuilding NixOS on \(name)")),
                .sendBundle(node: name, bundle: nodes[name]!.bundle!),
            ]
        case .rebuild:
            return [.waitRebuild(node: name, operationID: run.operationID, applySerial: run.applySerial)]
        case .drain:
            return [
                .notify(RolloutNotice(node: name, phase: .drain, status: .started, message: "Draining \(name)")),
                .drain(node: name),
            ]
        case .reboot:
            return [
                .notify(RolloutNotice(node: name, phase: .reboot, status: .started, message: "Rebooting \(name)")),
                .reboot(node: name),
            ]
        case .waitReachable: return [.waitReachable(node: name, oldBootID: run.bootIDBeforeReboot)]
        case .waitReady: return [.waitReady(node: name)]
        case .uncordon: return [.uncordon(node: name)]
        case .confirm: return [.confirm(node: name, applySerial: run.applySerial!)]
        case .gates: return []
        }
    }

    private mutating func complete(_ name: String) -> [Action] {
        guard let run = running.removeValue(forKey: name) else { return [] }
        runningOrder.removeAll { $0 == name }
        var actions: [Action] = []
        if run.recovering {
            summary.recovered.append(name)
            switch run.after {
            case .pending:
                pending.insert(name)
                return []
            case .unchanged:
                summary.unchanged.append(name)
                actions.append(.notify(noActionNotice(name)))
            case .alreadyDone:
                summary.alreadyDone.append(name)
            case .finish:
                break
            }
            return actions
        }
        if run.after == .unchanged {
            summary.unchanged.append(name)
            done[name] = nodes[name]!.desiredHash ?? ""
            return []
        }
        summary.updated.append(name)
        done[name] = nodes[name]!.desiredHash ?? ""
        if let before = run.kernelBefore, let after = run.kernelAfter, before != after {
            summary.kernelChanges[name] = .init(from: before, to: after)
            actions.append(
                .notify(RolloutNotice(
                    node: name, phase: .rollout, status: .ok, message: "Kernel upgraded from \(before) to \(after) on \(name)")))
        }
        return actions
    }

    private func noActionNotice(_ name: String) -> RolloutNotice {
        RolloutNotice(
            node: name, phase: .rollout, status: .skipped,
            message: plan.isUpgrade ? "No upgrade needed on \(name)" : "No action needed on \(name)")
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
        var actions: [Action] = [
            .notify(RolloutNotice(node: failure.node, phase: failure.step?.phase ?? .rollout, status: .failed, message: failure.message))
        ]
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
        let name = run.name
        var message = "rollout aborted: \(name) failed during \(step.rawValue): \(cause)."
        if kind == .rebuildFailed {
            message += " Its agent restored the previous configuration; \(name) was not drained."
        } else if let serial = run.applySerial, !run.confirmed, kind != .rolledBack {
            message += " nk3 did not confirm apply \(serial): the agent on \(name) rolls back to the previous generation "
                + "by itself when its confirm deadline passes."
        }
        if run.cordonedByUs {
            message += " \(name) stays cordoned (nk3's annotation records why); fix the cause and rerun nk3 to bring it "
                + "back and continue."
        }
        let others = runningOrder.filter { $0 != name }
        if !others.isEmpty {
            message += " Also in flight: \(others.joined(separator: ", ")) (unconfirmed changes roll back the same way)."
        }
        return RolloutFailure(kind: kind, node: name, step: step, cause: cause, message: message)
    }

    private func gateFailure(kind: RolloutFailure.Kind, cause: String) -> RolloutFailure {
        let waiting = gateNodes.isEmpty ? runningOrder : gateNodes
        var message = "rollout aborted during gates: \(cause)."
        if let first = waiting.first {
            message += " Waiting on the gates: \(waiting.joined(separator: ", ")); nk3 did not confirm them, so their "
                + "agents roll back unconfirmed changes at the confirm deadline."
            return RolloutFailure(kind: kind, node: first, step: .gates, cause: cause, message: message)
        }
        message += " No node was touched" + (summary.updated.isEmpty ? "." : " after \(summary.updated.joined(separator: ", ")).")
        return RolloutFailure(kind: kind, node: nil, step: .gates, cause: cause, message: message)
    }
}

/// Human-readable durations for messages ("10m", "1m30s", "250ms").
public enum RolloutDurations {
    /// Formats `d` compactly.
    public static func describe(_ d: Duration) -> String {
        let (s, atto) = d.components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        if ms < 1000 { return "\(ms)ms" }
        if ms % 1000 != 0 && ms < 60_000 { return String(format: "%.1fs", Double(ms) / 1000) }
        let total = ms / 1000
        let h = total / 3600, m = (total % 3600) / 60, sec = total % 60
        var out = ""
        if h > 0 { out += "\(h)h" }
        if m > 0 { out += "\(m)m" }
        if sec > 0 || out.isEmpty { out += "\(sec)s" }
        return out
    }
}
