import Foundation
import Logging
import NK3Kube
import NK3Protocol

/// How long each wait may take before the rollout aborts. Every wait has one (colmena#166 waited forever).
public struct RolloutTimeouts: Sendable, Hashable {
    /// One request to an agent (submit, status).
    public var agentCall: Duration
    /// `nixos-rebuild` on a node, from the accepted envelope to its result.
    public var rebuild: Duration
    /// Draining a node (passed to the drain; PDB-blocked evictions retry until then).
    public var drain: Duration
    /// From the reboot request until the agent answers with a new boot id.
    public var reboot: Duration
    /// Until kubelet reports Ready.
    public var ready: Duration
    /// One run of the health gates.
    public var gates: Duration
    /// One status poll while a node reboots. A poll that hangs — a connection the old boot accepted just
    /// before it went down, or a host that is still off and never answers the SYN — is abandoned and the
    /// next one tried, instead of holding the wait for a whole `agentCall` (`nk3 bench` saw such a poll
    /// cost 10 s on a node that was back 7 ms after going down).
    public var reachablePoll: Duration

    /// Defaults sized for real hardware (a reboot of a server with many disks takes minutes).
    public init(
        agentCall: Duration = .seconds(30), rebuild: Duration = .seconds(3600), drain: Duration = .seconds(600),
        reboot: Duration = .seconds(900), ready: Duration = .seconds(600), gates: Duration = .seconds(900),
        reachablePoll: Duration = .seconds(3)
    ) {
        self.agentCall = agentCall
        self.rebuild = rebuild
        self.drain = drain
        self.reboot = reboot
        self.ready = ready
        self.gates = gates
        self.reachablePoll = reachablePoll
    }
}

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

        /// Makes a configuration.
        public init(
            holder: String, leaseTTL: Duration = .seconds(60), leaseRenewInterval: Duration? = nil,
            pollInterval: Duration = .milliseconds(100), timeouts: RolloutTimeouts = RolloutTimeouts(),
            cordonReason: String = "nk3 rollout"
        ) {
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
    public func run(_ plan: RolloutPlan) async throws -> RolloutSummary {
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
                do { return .success(try await self.drive(plan)) } catch { return .failure(error) }
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

    private func keepLease() async throws {
        let ttl = configuration.leaseTTL
        let every = configuration.leaseRenewInterval ?? ttl / 3
        var lastRenewed = clock.now
        while true {
            try await clock.sleep(until: clock.now.advanced(by: every), tolerance: nil)
            do {
                _ = try await cluster.renewLease(holder: configuration.holder, ttl: ttl)
                lastRenewed = clock.now
            } catch let held as RolloutLeaseHeld {
                throw fail(leaseHeldFailure(held, lost: true))
            } catch {
                if Task.isCancelled { throw CancellationError() }
                logger.warning("could not renew the rollout lease", metadata: ["rollout.error": "\(error)"])
                if lastRenewed.duration(to: clock.now) >= ttl {
                    throw fail(
                        RolloutFailure(
                            kind: .lockHeld, cause: "could not renew the rollout lease for \(RolloutDurations.describe(ttl)): \(error)",
                            message: "rollout aborted: could not renew the cluster's rollout lease for "
                                + "\(RolloutDurations.describe(ttl)) (\(error)); another coordinator may take it, so nk3 "
                                + "stops here. Progress is saved; rerun to resume."))
                }
            }
        }
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
    private struct Deadline {
        var step: RolloutStep
        var at: C.Instant
        var since: C.Instant
    }

    private func drive(_ plan: RolloutPlan) async throws -> RolloutSummary {
        let progress: RolloutProgress?
        let cordoned: [String: String]
        do {
            progress = try await cluster.loadProgress()
            cordoned = try await cluster.cordonedByNK3()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw fail(
                RolloutFailure(
                    kind: kind(of: error, default: .other), cause: "could not read the cluster state: \(error)",
                    message: "rollout not started: could not read saved progress and nk3's cordons from Kubernetes: \(error)"))
        }
        let (statuses, unreachable) = await probe(plan.nodes.map(\.name))
        try Task.checkCancellation()
        var machine = RolloutMachine(plan: plan)
        var actions = machine.start(
            .init(statuses: statuses, unreachable: unreachable, cordonedByNK3: cordoned, progress: progress, at: now()))

        return try await withThrowingTaskGroup(of: RolloutMachine.Input.self) { group in
            var deadlines: [String: Deadline] = [:]
            var outstanding = 0
            while true {
                for action in actions {
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
                    default:
                        let wait = self.deadline(for: action, in: &deadlines)
                        outstanding += 1
                        group.addTask { try await self.perform(action, wait: wait) }
                    }
                }
                guard outstanding > 0, let input = try await group.next() else {
                    group.cancelAll()
                    throw fail(RolloutFailure(kind: .other, cause: "internal error: the rollout stalled with nothing to wait for"))
                }
                outstanding -= 1
                actions = machine.handle(input)
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
        case .waitReachable(let n, _): (node, step, timeout) = (n, .waitReachable, t.reboot)
        case .waitReady(let n): (node, step, timeout) = (n, .waitReady, t.ready)
        case .runGates: (node, step, timeout) = ("", .gates, t.gates)
        default: return nil
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
    private func pace(since: C.Instant) -> Duration {
        PollPace.delay(waited: since.duration(to: clock.now), interval: configuration.pollInterval)
    }

    private func probe(_ names: [String]) async -> ([String: AgentStatus], [String: String]) {
        let timeout = configuration.timeouts.agentCall
        let results = await withTaskGroup(of: (String, Result<AgentStatus, any Error>).self) { group in
            for name in names {
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

    // MARK: - Actions

    /// Carries out one node or gate action; every outcome becomes an input. Throws only on cancellation.
    private func perform(_ action: RolloutMachine.Action, wait: Deadline?) async throws -> RolloutMachine.Input {
        let t = configuration.timeouts
        let deadline = wait?.at
        let since = wait?.since ?? clock.now
        switch action {
        case .sendBundle(let node, let bundle):
            do {
                let receipt = try await withTimeout(t.agentCall) { try await agents.submit(node: node, command: .apply(bundle)) }
                return .bundleAccepted(node: node, receipt: receipt)
            } catch {
                try rethrowCancellation(error)
                return .failed(
                    node: node, step: .send, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not accept the bundle: \(error)")
            }

        case .waitRebuild(let node, let operationID, let serial):
            while true {
                let asked = clock.now
                // A long poll: the agent answers as soon as the rebuild is over, or after `rebuildLongPoll`.
                let wait = deadline.map { min(Self.rebuildLongPoll, asked.duration(to: $0)) } ?? Self.rebuildLongPoll
                if let outcome = try await rebuildOutcome(node: node, operationID: operationID, serial: serial, wait: wait) {
                    return .rebuildFinished(node: node, outcome: outcome, at: now())
                }
                if let deadline, clock.now >= deadline { return .timedOut(node: node, step: .rebuild, after: t.rebuild) }
                // An agent that held the answer has waited already; one that answered at once (one that cannot
                // wait, a status fallback without an operation id, a failed call) is asked again at the usual pace.
                let pace = pace(since: since)
                if asked.duration(to: clock.now) < pace {
                    try await clock.sleep(until: clock.now.advanced(by: pace), tolerance: nil)
                }
            }

        case .drain(let node):
            do {
                try await cluster.cordon(node, reason: configuration.cordonReason)
            } catch {
                try rethrowCancellation(error)
                return .failed(node: node, step: .drain, kind: kind(of: error, default: .other), cause: "could not cordon: \(error)")
            }
            do {
                try await withTimeout(t.drain + t.agentCall) { try await cluster.drain(node, timeout: t.drain) }
            } catch is RolloutTimedOut {
                return .timedOut(node: node, step: .drain, after: t.drain)
            } catch {
                try rethrowCancellation(error)
                return .failed(node: node, step: .drain, kind: kind(of: error, default: .timeout), cause: "drain failed: \(error)")
            }
            do {
                let status = try await withTimeout(t.agentCall) { try await agents.status(node: node) }
                return .drained(node: node, status: status)
            } catch {
                try rethrowCancellation(error)
                return .failed(
                    node: node, step: .reboot, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not answer before the reboot: \(error)")
            }

        case .reboot(let node):
            do {
                _ = try await withTimeout(t.agentCall) {
                    try await agents.submit(node: node, command: .reboot(RebootCommand(reason: configuration.cordonReason)))
                }
                return .rebootIssued(node: node)
            } catch {
                try rethrowCancellation(error)
                return .failed(
                    node: node, step: .reboot, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not accept the reboot: \(error)")
            }

        case .waitReachable(let node, _):
            while true {
                // Never ask at once: the agent answers the reboot before it goes down, so an immediate look
                // would only find the old boot.
                try await clock.sleep(until: clock.now.advanced(by: pace(since: since)), tolerance: nil)
                if let deadline, clock.now >= deadline { return .timedOut(node: node, step: .waitReachable, after: t.reboot) }
                do {
                    let status = try await withTimeout(min(t.agentCall, t.reachablePoll)) { try await agents.status(node: node) }
                    return .agentReachable(node: node, status: status, at: now())
                } catch {
                    try rethrowCancellation(error)  // down while rebooting: keep polling
                }
            }

        case .waitReady(let node):
            var lastError: (any Error)?
            while true {
                do {
                    if try await withTimeout(t.agentCall, { try await cluster.nodeReady(node) }) {
                        return .nodeReady(node: node, at: now())
                    }
                    lastError = nil
                } catch {
                    try rethrowCancellation(error)  // the API may be down while a server reboots: keep polling
                    lastError = error
                }
                if let deadline, clock.now >= deadline {
                    // Say so when it was the API, not the kubelet, that never answered "Ready".
                    if let lastError {
                        return .failed(
                            node: node, step: .waitReady, kind: .timeout,
                            cause: "kubelet did not become Ready within \(RolloutDurations.describe(t.ready)): the "
                                + "Kubernetes API failed the last check: \(lastError)")
                    }
                    return .timedOut(node: node, step: .waitReady, after: t.ready)
                }
                try await clock.sleep(until: clock.now.advanced(by: pace(since: since)), tolerance: nil)
            }

        case .uncordon(let node):
            do {
                let ours = try await withTimeout(t.agentCall) { try await cluster.uncordonIfOurs(node) }
                return .uncordoned(node: node, wasOurs: ours, at: now())
            } catch {
                try rethrowCancellation(error)
                return .failed(node: node, step: .uncordon, kind: kind(of: error, default: .other), cause: "could not uncordon: \(error)")
            }

        case .runGates(let since):
            let sink = self.sink
            let now = self.now
            do {
                try await withTimeout(t.gates + t.agentCall) {
                    try await cluster.runGates(since: since, timeout: t.gates) { line in
                        sink.emit(RolloutEvent(timestamp: now(), node: line.node, phase: .gates, status: line.status, message: line.message))
                    }
                }
                return .gatesPassed(at: now())
            } catch is RolloutTimedOut {
                return .timedOut(node: nil, step: .gates, after: t.gates)
            } catch {
                try rethrowCancellation(error)
                return .failed(node: nil, step: .gates, kind: kind(of: error, default: .timeout), cause: "\(error)")
            }

        case .confirm(let node, let serial):
            do {
                _ = try await withTimeout(t.agentCall) {
                    try await agents.submit(node: node, command: .confirm(ConfirmCommand(applySerial: serial)))
                }
                return .confirmed(node: node)
            } catch {
                try rethrowCancellation(error)
                if let status = try? await withTimeout(t.agentCall, { try await agents.status(node: node) }),
                    let last = status.lastResult, last.serial == serial, last.outcome == .rolledBack
                {
                    return .failed(
                        node: node, step: .confirm, kind: .rolledBack,
                        cause: "the agent had already rolled back apply \(serial): \(last.message)")
                }
                return .failed(
                    node: node, step: .confirm, kind: kind(of: error, default: .unreachable),
                    cause: "the agent did not accept the confirm: \(error)")
            }

        case .notify, .saveProgress, .abort, .done:
            preconditionFailure("handled by the driver loop")
        }
    }

    /// How long one `GET /v1/operations/ID` may hold its answer while a node rebuilds.
    static var rebuildLongPoll: Duration { .seconds(10) }

    /// Reads an apply's state (a long poll of up to `wait` where the agent can); nil while it is still rebuilding
    /// (or the agent is briefly unreachable).
    private func rebuildOutcome(node: String, operationID: String?, serial: UInt64?, wait: Duration) async throws
        -> RebuildOutcome?
    {
        let timeout = configuration.timeouts.agentCall
        var operation: OperationStatus?
        var result: OperationResult?
        var logTail = ""
        do {
            if let operationID {
                let report = try await withTimeout(timeout + wait) {
                    try await agents.operation(node: node, id: operationID, waitUpTo: wait)
                }
                (operation, result, logTail) = (report.operation, report.result, report.logTail)
            } else {
                let status = try await withTimeout(timeout) { try await agents.status(node: node) }
                operation = status.operation.flatMap { $0.serial == serial ? $0 : nil }
                result = status.lastResult.flatMap { $0.serial == serial ? $0 : nil }
            }
        } catch {
            try rethrowCancellation(error)
            return nil
        }
        if let result {
            let detail = logTail.isEmpty ? result.message : result.message + "\n" + logTail
            switch result.outcome {
            case .unchanged: return .unchanged(message: result.message)
            case .committed: return .committed
            case .failed: return .failed(message: detail)
            case .rolledBack: return .rolledBack(message: detail)
            case .rebooted: return nil
            }
        }
        if let operation, operation.phase == .awaitingConfirm {
            return .awaitingConfirm(bootIDAtRebuild: operation.bootIDAtRebuild)
        }
        return nil
    }

    // MARK: - Helpers

    private func emit(_ notice: RolloutNotice) {
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

    private func kind(of error: any Error, default fallback: RolloutFailure.Kind) -> RolloutFailure.Kind {
        if let classified = error as? any RolloutClassifiedError { return classified.rolloutFailureKind }
        if error is WireError { return .other }  // the agent answered and refused
        if error is RolloutTimedOut { return .timeout }
        return fallback
    }

    private func rethrowCancellation(_ error: any Error) throws {
        if error is CancellationError || Task.isCancelled { throw CancellationError() }
    }

    /// Runs `body`, throwing `RolloutTimedOut` if it takes longer than `timeout` on the executor's clock.
    private func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let clock = self.clock
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await clock.sleep(until: clock.now.advanced(by: timeout), tolerance: nil)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw RolloutTimedOut(after: timeout) }
            return value
        }
    }
}

/// A call took longer than its timeout.
public struct RolloutTimedOut: Error, Sendable, Hashable, CustomStringConvertible {
    /// The timeout that passed.
    public var after: Duration
    public var description: String { "no answer within \(RolloutDurations.describe(after))" }
}
