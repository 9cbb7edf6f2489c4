import Foundation
import Logging
import NK3Kube
import NK3Protocol

/// Drives a `RolloutMachine` against real (or fake) agents and a cluster: takes the Lease, loads progress,
/// probes every agent, then carries out the machine's actions (node actions concurrently, one per node) and
/// feeds their results back, until the machine says done or abort. All waiting goes through `clock`.
public struct RolloutExecutor<C: Clock>: Sendable where C.Duration == Duration {
    /// Knobs of the executor.
    public struct Configuration: Sendable {
        /// Lease holder identity (e.g. `user@host/pid`): named to anyone who finds the lease taken.
        public var holder: String
        /// Lease duration; a dead coordinator's lease lapses after this (kured#137: locks must expire).
        public var leaseTTL: Duration
        /// How often the lease is renewed (default a third of the TTL).
        public var leaseRenewInterval: Duration?
        /// Poll interval of every wait (fast: a condition is noticed within about this long).
        public var pollInterval: Duration
        /// Per-wait timeouts.
        public var timeouts: RolloutTimeouts
        /// Reason recorded in nk3's cordon annotation.
        public var cordonReason: String
        /// What must hold before a node starts (maintenance window, alert gate); nil holds nothing.
        public var startPolicy: NodeStartPolicy?
        /// Flake mode: called with the lock an upgrade ships to every node once it is known (the first node's
        /// update, or the lock a rerun resumes from); the notice it returns is emitted. nil: nothing is called.
        public var flakeLockPinned: (@Sendable (_ lock: String) -> RolloutNotice?)?

        /// Makes a configuration.
        public init(
            holder: String, leaseTTL: Duration = .seconds(60), leaseRenewInterval: Duration? = nil,
            pollInterval: Duration = .milliseconds(100), timeouts: RolloutTimeouts = RolloutTimeouts(),
            cordonReason: String = "nk3 rollout", startPolicy: NodeStartPolicy? = nil
        ) {
            self.startPolicy = startPolicy
            self.holder = holder
            self.leaseTTL = leaseTTL
            self.leaseRenewInterval = leaseRenewInterval
            self.pollInterval = pollInterval
            self.timeouts = timeouts
            self.cordonReason = cordonReason
        }
    }

    let agents: any RolloutAgents
    let cluster: any RolloutCluster
    let clock: C
    let now: @Sendable () -> Date
    let sink: any RolloutEventSink
    let logger: Logger
    /// The configuration in use.
    public let configuration: Configuration

    /// An executor; `now` gives wall-clock timestamps (events, gate `since`), `clock` measures waits.
    public init(
        agents: any RolloutAgents, cluster: any RolloutCluster, configuration: Configuration, clock: C,
        now: @escaping @Sendable () -> Date = { Date() }, sink: any RolloutEventSink, logger: Logger
    ) {
        self.agents = agents
        self.cluster = cluster
        self.configuration = configuration
        self.clock = clock
        self.now = now
        self.sink = sink
        self.logger = logger
    }

    // MARK: - Run

    /// Runs the rollout. Returns the summary, or throws a `RolloutFailure` (its `exitCode` is the process
    /// exit code), or `CancellationError` if the calling task was cancelled (progress stays saved; the lease
    /// is released; a rerun resumes).
    /// `probed`: every agent's status, if the caller has just asked them all (then they are not asked again).
    public func run(_ plan: RolloutPlan, probed: [String: AgentStatus]? = nil) async throws -> RolloutSummary {
        if let problem = plan.validationProblem() {
            throw fail(RolloutFailure(kind: .invalidInput, cause: problem, message: "invalid rollout: \(problem)"))
        }
        let holder = configuration.holder
        let lease: RolloutLease
        do {
            lease = try await cluster.acquireLease(holder: holder, ttl: configuration.leaseTTL)
        } catch let held as RolloutLeaseHeld {
            throw fail(leaseHeldFailure(held, lost: false))
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw fail(
                RolloutFailure(
                    kind: kind(of: error, default: .other), step: nil, cause: "could not take the rollout lease: \(error)",
                    message: "rollout not started: could not take the cluster's rollout lease: \(error)"))
        }
        emit(.init(node: nil, phase: .lease, status: .info,
                   message: "Holding the rollout lease as \(holder) until \(RolloutTimestamp.format(lease.expiresAt))"))
        logger.info("rollout lease taken", metadata: ["rollout.holder": "\(holder)"])

        let result: Result<RolloutSummary, any Error> = await withTaskGroup(of: Result<RolloutSummary, any Error>?.self) {
            group in
            group.addTask {
                do { return .success(try await self.drive(plan, probed: probed)) } catch { return .failure(error) }
            }
            group.addTask {
                do {
                    try await self.keepLease()
                    return nil
                } catch is CancellationError {
                    return nil
                } catch {
                    return .failure(error)
                }
            }
            var first: Result<RolloutSummary, any Error>?
            while let next = await group.next() {
                if let next {
                    first = next
                    group.cancelAll()
                    break
                }
            }
            group.cancelAll()
            return first ?? .failure(CancellationError())
        }

        if case .success = result {
            await detached { try await cluster.clearProgress() }
        }
        await detached { try await cluster.releaseLease(holder: holder) }
        return try result.get()
    }

    /// Runs `body` outside the current task's cancellation (cleanup after a cancelled run), ignoring errors.
    private func detached(_ body: @escaping @Sendable () async throws -> Void) async {
        await Task { try? await body() }.value
    }

    /// Renews the Lease every `leaseRenewInterval`; after a failed renewal it tries again sooner (every second or
    /// poll interval), and gives up once the Lease has gone unrenewed for its whole TTL. Only another holder is
    /// `.lockHeld`; an API that cannot be reached is `.unreachable` (exit 3), any other refusal `.other`.
    private func keepLease() async throws {
        let ttl = configuration.leaseTTL
        let every = configuration.leaseRenewInterval ?? ttl / 3
        let retry = min(every, max(configuration.pollInterval, .seconds(1)))
        var lastRenewed = clock.now
        var next = every
        while true {
            try await clock.sleep(until: clock.now.advanced(by: next), tolerance: nil)
            do {
                _ = try await cluster.renewLease(holder: configuration.holder, ttl: ttl)
                lastRenewed = clock.now
                next = every
            } catch let held as RolloutLeaseHeld {
                throw fail(leaseHeldFailure(held, lost: true))
            } catch {
                if Task.isCancelled { throw CancellationError() }
                logger.warning("could not renew the rollout lease", metadata: ["rollout.error": "\(error)"])
                next = retry
                if lastRenewed.duration(to: clock.now) >= ttl {
                    throw fail(renewalFailure(error, ttl: ttl))
                }
            }
        }
    }

    /// The failure when the Lease could not be renewed for `ttl`: unreachable API, or another error — never "another
    /// rollout holds the lease", which only a Lease held by someone else says.
    private func renewalFailure(_ error: any Error, ttl: Duration) -> RolloutFailure {
        let kind = kind(of: error, default: .other)
        let what =
            kind == .unreachable
            ? "the Kubernetes API could not be reached to renew the cluster's rollout lease"
            : "could not renew the cluster's rollout lease"
        return RolloutFailure(
            kind: kind == .lockHeld ? .other : kind,
            cause: "\(what) for \(RolloutDurations.describe(ttl)): \(error)",
            message: "rollout aborted: \(what) for \(RolloutDurations.describe(ttl)) (\(error)); another coordinator "
                + "could take it once it expires, so nk3 stops here. Progress is saved; rerun to resume.")
    }

    private func leaseHeldFailure(_ held: RolloutLeaseHeld, lost: Bool) -> RolloutFailure {
        let remaining = held.expiresAt.timeIntervalSince(now())
        let when =
            remaining > 0
            ? "expires at \(RolloutTimestamp.format(held.expiresAt)) (in \(RolloutDurations.describe(.milliseconds(Int64(remaining * 1000)))))"
            : "expired at \(RolloutTimestamp.format(held.expiresAt))"
        let cause = "the rollout lease is held by \(held.holder), which \(when)"
        if lost {
            return RolloutFailure(
                kind: .lockHeld, cause: cause,
                message: "rollout aborted: lost the cluster's rollout lease to \(held.holder) (it \(when)). nk3 stops "
                    + "here; progress is saved.")
        }
        return RolloutFailure(
            kind: .lockHeld, cause: cause,
            message: "rollout not started: another rollout holds the cluster's lease: holder \(held.holder), \(when). "
                + "Wait for it to finish (or, if that coordinator died, for the lease to expire), then rerun.")
    }

    // MARK: - Driving the machine

    /// A wait in progress: when it gives up, and when it began (which paces its polls).
    struct Deadline {
        var step: RolloutStep
        var at: C.Instant
        var since: C.Instant
    }

    private func drive(_ plan: RolloutPlan, probed: [String: AgentStatus]?) async throws -> RolloutSummary {
        let progress: RolloutProgress?
        let cordons: NodeCordons
        do {
            progress = try await cluster.loadProgress()
            cordons = try await cluster.cordons()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw fail(
                RolloutFailure(
                    kind: kind(of: error, default: .other), cause: "could not read the cluster state: \(error)",
                    message: "rollout not started: could not read saved progress and nk3's cordons from Kubernetes: \(error)"))
        }
        var blockers: [DrainBlocker] = []
        if plan.drainsNodes && !plan.options.skipDrainPreflight {
            do {
                blockers = try await cluster.drainBlockers(nodes: plan.nodes.map(\.name))
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw fail(
                    RolloutFailure(
                        kind: kind(of: error, default: .other), cause: "could not check the drains: \(error)",
                        message: "rollout not started: could not read the pods and disruption budgets to check the "
                            + "drains (\(error)); rerun, or pass --skip-drain-preflight"))
            }
        }
        let (statuses, unreachable) = await probe(plan.nodes.map(\.name), known: probed)
        try Task.checkCancellation()
        var machine = RolloutMachine(plan: plan)
        var actions = machine.start(
            .init(
                statuses: statuses, unreachable: unreachable, cordonedByNK3: cordons.byNK3,
                cordonedByOthers: cordons.byOthers, progress: progress, at: now(), drainBlockers: blockers))

        // One nixpkgs release per upgrade (ChannelPin, or in flake mode FlakeLockPin): a rerun keeps the release (or
        // lock) the nodes it finished fetched.
        var pin = plan.isUpgrade ? resumedPin(plan, progress: progress, statuses: statuses) : nil
        var pinSettled = !plan.isUpgrade || pin != nil
        if let pin {
            emit(pin.notice)
            if case .flake(let p) = pin, let notice = configuration.flakeLockPinned?(p.lock) { emit(notice) }
        }
        // Until the pin is settled, one node (the leader) fetches the channel; with a budget above 1 the other
        // nodes the machine starts meanwhile wait here for their bundle, so that they too get the leader's release.
        var pinLeader: String?
        var heldForPin: [RolloutMachine.Action] = []

        return try await withThrowingTaskGroup(of: RolloutMachine.Input.self) { group in
            var deadlines: [String: Deadline] = [:]
            var startedNodes: Set<String> = []
            var outstanding = 0
            while true {
                for planned in actions {
                    var action = planned
                    if case .sendBundle(let node, let bundle) = planned {
                        if let pin {
                            action = .sendBundle(node: node, bundle: pin.apply(to: bundle))
                        } else if !pinSettled, bundle.upgrade {
                            if let leader = pinLeader, leader != node {
                                heldForPin.append(planned)
                                continue
                            }
                            pinLeader = node
                        }
                    }
                    switch action {
                    case .notify(let notice):
                        emit(notice)
                    case .saveProgress(let p):
                        do {
                            try await saveProgress(p)
                        } catch {
                            if Task.isCancelled { throw CancellationError() }
                            group.cancelAll()
                            throw fail(
                                RolloutFailure(
                                    kind: kind(of: error, default: .other), cause: "could not save progress: \(error)",
                                    message: "rollout aborted: could not save progress before the next step (\(error)); "
                                        + "nothing further was touched. Rerun to resume."))
                        }
                    case .abort(let failure):
                        group.cancelAll()
                        logger.error("rollout aborted", metadata: ["rollout.node": "\(failure.node ?? "-")", "rollout.kind": "\(failure.kind.rawValue)"])
                        throw failure
                    case .done(let summary):
                        group.cancelAll()
                        return summary
                    case .sendBundle, .waitRebuild, .drain, .reboot, .waitReachable, .waitReady, .uncordon, .runGates,
                        .confirm:
                        let wait = self.deadline(for: action, in: &deadlines)
                        outstanding += 1
                        // A node about to start waits for the window and the alert gate (RolloutExecutor+StartHold).
                        let starting = startsNode(action, kind: plan.kind, fresh: machine.startsFresh, started: &startedNodes)
                        let policy = configuration.startPolicy
                        group.addTask {
                            if let starting, let policy, policy.holdsAnything,
                                let stop = try await self.awaitStart(starting, policy: policy, resumes: plan.kind == .reboot ? .drain : .rebuild)
                            {
                                // --no-wait outside the window: the node does not start; the machine stops between nodes.
                                return .startRefused(node: starting, failure: stop)
                            }
                            return try await self.perform(action, wait: wait)
                        }
                    }
                }
                guard outstanding > 0, let input = try await group.next() else {
                    group.cancelAll()
                    throw fail(RolloutFailure(kind: .other, cause: "internal error: the rollout stalled with nothing to wait for"))
                }
                outstanding -= 1
                var released: [RolloutMachine.Action] = []
                if !pinSettled, case .startRefused(let node, _) = input, node == pinLeader {
                    // The leader never started (outside the window): the held nodes go on, the next one leads.
                    pinLeader = nil
                    released = heldForPin
                    heldForPin = []
                }
                if !pinSettled, case .rebuildFinished(let node, let outcome, _) = input, pinLeader == nil || node == pinLeader {
                    // The leader's rebuild is over: the held nodes go on (pinned, when a pin could be taken).
                    released = heldForPin
                    heldForPin = []
                    if !outcome.fetchedChannel {
                        pinLeader = nil  // it fetched nothing (its rebuild failed): the next node to start leads
                    } else {
                        pinSettled = true
                        if let bundle = plan.nodes.first(where: { $0.name == node })?.bundle, bundle.upgrade,
                            bundle.flake != nil
                        {
                            do {
                                let status = try await withTimeout(configuration.timeouts.agentCall) { try await agents.status(node: node) }
                                switch FlakeLockPin.from(node: node, status: status) {
                                case .success(let p):
                                    pin = .flake(p)
                                    emit(p.notice)
                                    if let notice = configuration.flakeLockPinned?(p.lock) { emit(notice) }
                                case .failure(let why):
                                    emit(FlakeLockPin.warning(why))
                                }
                            } catch {
                                try rethrowCancellation(error)
                                emit(FlakeLockPin.warning(.init(reason: "\(node)'s agent did not report its flake.lock (\(error))")))
                            }
                        } else if let bundle = plan.nodes.first(where: { $0.name == node })?.bundle, bundle.upgrade,
                            let channel = bundle.nixChannel
                        {
                            do {
                                let status = try await withTimeout(configuration.timeouts.agentCall) { try await agents.status(node: node) }
                                switch ChannelPin.from(node: node, status: status, channel: channel) {
                                case .success(let p):
                                    pin = .channel(p)
                                    emit(p.notice)
                                case .failure(let why):
                                    emit(ChannelPin.warning(why))
                                }
                            } catch {
                                try rethrowCancellation(error)
                                emit(ChannelPin.warning(.init(reason: "\(node)'s agent did not report its channel release (\(error))")))
                            }
                        }
                    }
                }
                actions = machine.handle(input) + released
            }
        }
    }

    /// Saves progress, retrying while the Kubernetes API fails — for as long as the lease may go unrenewed
    /// (`leaseTTL`), the same tolerance `keepLease` has. A k3s server restarting (the one the kubeconfig
    /// names may be the node just rebooted) made every rollout abort here on its first failed save.
    private func saveProgress(_ progress: RolloutProgress) async throws {
        let start = clock.now
        var delay = configuration.pollInterval
        while true {
            do {
                try await cluster.saveProgress(progress)
                return
            } catch {
                if Task.isCancelled { throw CancellationError() }
                if start.duration(to: clock.now) >= configuration.leaseTTL { throw error }
                logger.warning("could not save rollout progress, retrying", metadata: ["rollout.error": "\(error)"])
                try await clock.sleep(until: clock.now.advanced(by: delay), tolerance: nil)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    private func deadline(for action: RolloutMachine.Action, in deadlines: inout [String: Deadline]) -> Deadline? {
        let t = configuration.timeouts
        let (node, step, timeout): (String, RolloutStep, Duration)
        switch action {
        case .waitRebuild(let n, _, _): (node, step, timeout) = (n, .rebuild, t.rebuild)
        case .waitReachable(let n, _, _): (node, step, timeout) = (n, .waitReachable, t.reboot)
        case .waitReady(let n, _): (node, step, timeout) = (n, .waitReady, t.ready)
        case .runGates: (node, step, timeout) = ("", .gates, t.gates)
        case .sendBundle, .drain, .reboot, .uncordon, .confirm, .notify, .saveProgress, .abort, .done: return nil
        }
        // A re-issued wait (the agent answered with its old boot id) keeps its first deadline and pace.
        if let d = deadlines[node], d.step == step, step == .waitReachable { return d }
        let start = clock.now
        let wait = Deadline(step: step, at: start.advanced(by: timeout), since: start)
        deadlines[node] = wait
        return wait
    }

    /// The sleep before the next look during a wait that began at `since` (`PollPace`: a few ms at first,
    /// never more than `pollInterval`).
    func pace(since: C.Instant) -> Duration {
        PollPace.delay(waited: since.duration(to: clock.now), interval: configuration.pollInterval)
    }

    private func probe(_ names: [String], known: [String: AgentStatus]?) async -> ([String: AgentStatus], [String: String]) {
        let timeout = configuration.timeouts.agentCall
        let results = await withTaskGroup(of: (String, Result<AgentStatus, any Error>).self) { group in
            for name in names {
                if let status = known?[name] {
                    group.addTask { (name, .success(status)) }
                    continue
                }
                group.addTask {
                    do {
                        return (name, .success(try await self.withTimeout(timeout) { try await self.agents.status(node: name) }))
                    } catch {
                        return (name, .failure(error))
                    }
                }
            }
            var out: [String: Result<AgentStatus, any Error>] = [:]
            for await (name, r) in group { out[name] = r }
            return out
        }
        var statuses: [String: AgentStatus] = [:]
        var unreachable: [String: String] = [:]
        for name in names {
            switch results[name] {
            case .success(let s)?:
                statuses[name] = s
                emit(.init(node: name, phase: .probe, status: .ok, message: "\(name) is reachable"))
            case .failure(let e)?:
                unreachable[name] = "\(e)"
            case nil:
                unreachable[name] = "not probed"
            }
        }
        return (statuses, unreachable)
    }

    /// On a rerun of the same upgrade, the release a node it already finished fetched.
    private func resumedPin(_ plan: RolloutPlan, progress: RolloutProgress?, statuses: [String: AgentStatus]) -> UpgradePin? {
        guard let progress, progress.planFingerprint == plan.fingerprint else { return nil }
        for name in progress.done.keys.sorted() {
            guard let bundle = plan.nodes.first(where: { $0.name == name })?.bundle, let status = statuses[name] else { continue }
            if bundle.flake != nil {
                if case .success(let pin) = FlakeLockPin.from(node: name, status: status) { return .flake(pin) }
                continue
            }
            guard let channel = bundle.nixChannel,
                case .success(let pin) = ChannelPin.from(node: name, status: status, channel: channel)
            else { continue }
            return .channel(pin)
        }
        return nil
    }

    // MARK: - Helpers

    func emit(_ notice: RolloutNotice) {
        sink.emit(RolloutEvent(notice, at: now()))
        var meta: Logger.Metadata = ["rollout.phase": "\(notice.phase.rawValue)", "rollout.status": "\(notice.status.rawValue)"]
        if let node = notice.node { meta["rollout.node"] = "\(node)" }
        logger.debug("\(notice.message)", metadata: meta)
    }

    /// Emits the failure's message (for failures raised outside the machine) and returns it.
    private func fail(_ failure: RolloutFailure) -> RolloutFailure {
        emit(.init(node: failure.node, phase: failure.step?.phase ?? (failure.kind == .lockHeld ? .lease : .rollout),
                   status: .failed, message: failure.message))
        return failure
    }
}
