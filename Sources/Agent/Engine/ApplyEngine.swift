#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import NK3Protocol
import ServiceLifecycle

/// The agent's apply engine: carries out `ApplyMachine` actions against a `NodeSystem`, persisting the
/// machine's state in the state directory before every side effect, and runs the confirm-deadline timer.
///
/// Lifecycle: `init` loads the persisted state; `start()` feeds the machine the current boot id (resuming or
/// rolling back whatever a crash, kill or reboot interrupted) and is idempotent; as a `Service`, `run()`
/// starts and then waits for graceful shutdown.
public actor ApplyEngine: AgentEngine, Service {
    private let system: any NodeSystem
    private let clock: any AgentClock
    private let store: ApplyStateStore
    private let k3sUnit: String
    private let rebootDelay: Duration
    /// Reboots waiting for their answer to be written, by command serial.
    private var answerGates: [UInt64: AnswerGate] = [:]
    private let logger: Logger
    private let logs = OperationLogs()
    private let metrics = EngineMetrics()

    private var machine: ApplyMachine {
        didSet { wakeChangeWaiters() }
    }
    /// Long polls waiting for the machine to change (`operation(id:waitingUpTo:)`), by ticket.
    private var changeWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextChangeTicket = 0
    private var started = false
    private var work: Task<Void, Never>?
    private var deadlineTask: Task<Void, Never>?
    private var deadlineDate: Date?
    /// Kubelet probe result, reused for 250 ms of real (monotonic) time so a burst of status requests runs one
    /// `systemctl is-active` and one healthz GET; not the agent clock, which a simulation may hold still.
    private var kubeletCache: (at: ContinuousClock.Instant, state: KubeletState)?

    /// Creates the engine over `system`, with its state in `stateDir` (created if missing).
    /// - Parameters:
    ///   - k3sUnit: systemd unit whose activity is reported as the kubelet's (`k3s`).
    ///   - clock: time source for deadlines (tests pass a `ManualAgentClock`).
    ///   - rebootDelay: the longest a RebootCommand waits for its answer to be written out before rebooting.
    /// - Throws: `WireError(.internalError)` if the persisted state exists but cannot be read.
    public init(
        system: any NodeSystem, stateDir: String, k3sUnit: String = "k3s", clock: any AgentClock = SystemAgentClock(),
        rebootDelay: Duration = .milliseconds(500), logger: Logger
    ) throws {
        try? FileManager.default.createDirectory(
            atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.system = system
        self.clock = clock
        self.store = ApplyStateStore(stateDir: stateDir)
        self.k3sUnit = k3sUnit
        self.rebootDelay = rebootDelay
        self.logger = logger
        self.machine = ApplyMachine(state: try store.load())
        metrics.rollbacks.increment(by: Int64(machine.state.rollbacksTotal))
        if let r = machine.state.lastResult { metrics.record(r, duration: nil, countOutcome: false) }
    }

    /// The persisted machine state (for tests and diagnostics).
    public var state: ApplyMachine.State { machine.state }

    /// Resumes after a (re)start: reads the boot id and lets the machine decide (revert an interrupted apply,
    /// redo an interrupted rollback, re-arm a boot apply's deadline after the reboot). Waits for that work.
    public func start() async {
        guard !started else { return }
        started = true
        let bootID: String
        do {
            bootID = try await system.facts().bootID
        } catch {
            logger.error("cannot read the boot id; assuming an unchanged boot", metadata: ["agent.error": "\(error)"])
            bootID = machine.state.bootID ?? "unknown"
        }
        if let a = machine.state.apply {
            logger.info(
                "resuming apply after agent start",
                metadata: ["agent.op": "\(a.id)", "agent.phase": "\(a.phase.rawValue)", "agent.boot_id": "\(bootID)"])
        }
        // What this boot runs: a trial boot that fell back to the loader's default is told apart by it.
        let booted = (try? await system.generations())?.bootedSystem
        enqueue(.started(bootID: bootID, bootedSystem: booted, now: clock.now()))
        await waitUntilSettled()
    }

    /// Service entry point: start, then serve deadlines until graceful shutdown. Work in flight is left to the
    /// persisted state machine (the next start resumes or reverts it) rather than torn down half-way.
    public func run() async throws {
        await start()
        try? await gracefulShutdown()
        halt()
    }

    /// Stops the confirm-deadline watcher, as the end of the process does (the deadline stays persisted and is
    /// re-armed by the next `start()`). Tests that replace an engine by a new one, as a restarted agent would,
    /// halt the old one first: otherwise its deadline would still fire, a second agent on the same machine.
    public func halt() {
        deadlineTask?.cancel()
        deadlineTask = nil
        deadlineDate = nil
    }

    /// Waits until no step is running and no due deadline is pending (tests, `nk3-agent run-once`).
    public func waitUntilSettled() async {
        while true {
            if let d = deadlineDate, d <= clock.now(), let t = deadlineTask {
                await t.value
                continue
            }
            if let w = work {
                await w.value
                if work == nil || (work.map { $0 == w } ?? false) { work = nil }
                continue
            }
            return
        }
    }

    // MARK: AgentEngine

    public func status() async -> AgentStatus {
        // The machine's own record first, then the system: this actor runs other work at each `await` below, so
        // reading the record last could pair a result that says "rolled back" with generations read before the
        // rollback moved the profile. Read in this order, everything a result reports done is in the facts.
        let operation = machine.operationStatus
        let lastResult = machine.state.lastResult
        let pendingReboot = machine.state.pendingReboot
        let facts = (try? await system.facts()) ?? NodeFacts(
            hostname: "unknown", kernel: "unknown", nixosVersion: nil, bootID: AgentStatus.unknownBootID, uptimeSeconds: 0)
        let gens = try? await system.generations()
        let files = (try? await system.readConfigFiles()) ?? [:]
        let channel = try? await system.channelState()
        let kubelet = await kubeletState()
        let current = gens?.generation(of: gens?.currentSystem)
        let booted = gens?.generation(of: gens?.bootedSystem)
        return AgentStatus(
            hostname: facts.hostname, kernel: facts.kernel, nixosVersion: facts.nixosVersion,
            currentSystem: gens?.currentSystem, bootedSystem: gens?.bootedSystem, currentGeneration: current,
            bootedGeneration: booted, profileGeneration: gens?.profileGeneration,
            profileKernel: gens?.profileGeneration.flatMap { gens?.kernels[$0] }, bootID: facts.bootID,
            uptimeSeconds: facts.uptimeSeconds, configHash: ConfigFiles.hash(files: files),
            files: ConfigFiles.digests(files), channel: channel?.url(named: "nixos"), lastAcceptedSerial: nil,
            operation: operation, lastResult: lastResult, kubelet: kubelet,
            rollbackMode: await system.trialBootLoader() == nil ? "dead-man" : "trial-boot",
            pendingReboot: pendingReboot.flatMap { p in
                // Still this boot: accepted, not carried out yet.
                p.bootID == facts.bootID
                    ? PendingRebootStatus(bootID: p.bootID, reason: p.reason, serial: p.serial, requestedAt: p.requestedAt)
                    : nil
            }, channelRelease: channel?.release, flakeLock: files[FlakeLock.lockFile].map(FlakeLock.report))
    }

    public func landedFiles() async -> [String: String] {
        (try? await system.readConfigFiles()) ?? [:]
    }

    public func operation(id: String) async -> OperationReport? {
        let op = machine.operationStatus.flatMap { $0.id == id ? $0 : nil }
        let result = machine.state.lastResult.flatMap { $0.id == id ? $0 : nil }
        let tail = logs.tail(id)
        if op == nil && result == nil && tail == nil { return nil }
        return OperationReport(
            operation: op, result: result, logTail: tail ?? "(no log kept for this operation since the agent started)")
    }

    public func operation(id: String, waitingUpTo wait: Duration) async -> OperationReport? {
        let end = ContinuousClock.now.advanced(by: wait)
        while let op = machine.operationStatus, op.id == id, [.received, .staged, .rebuilding].contains(op.phase) {
            let left = ContinuousClock.now.duration(to: end)
            if left <= .zero || Task.isCancelled { break }
            await waitForChange(atMost: left)
        }
        return await operation(id: id)
    }

    /// Returns after the machine next changes, after `limit`, or when the calling task is cancelled.
    private func waitForChange(atMost limit: Duration) async {
        let ticket = nextChangeTicket
        nextChangeTicket += 1
        let timer = Task { [weak self] in
            try? await Task.sleep(for: limit)
            await self?.wakeChangeWaiter(ticket)
        }
        await withTaskCancellationHandler {
            // Registered before this actor can run anything else (the timer's wake included), so no wake is lost.
            await withCheckedContinuation { changeWaiters[ticket] = $0 }
        } onCancel: {
            Task { await self.wakeChangeWaiter(ticket) }
        }
        timer.cancel()
    }

    private func wakeChangeWaiter(_ ticket: Int) {
        changeWaiters.removeValue(forKey: ticket)?.resume()
    }

    private func wakeChangeWaiters() {
        guard !changeWaiters.isEmpty else { return }
        let waiters = changeWaiters
        changeWaiters = [:]
        for w in waiters.values { w.resume() }
    }

    public func responseSent(serial: UInt64) async {
        answerGates.removeValue(forKey: serial)?.open()
    }

    private func forgetAnswerGate(_ serial: UInt64) {
        answerGates[serial] = nil
    }

    public func metricsText() async -> String {
        if let gens = try? await system.generations() {
            metrics.generation.set(Double(gens.profileGeneration ?? -1))
            metrics.bootedGeneration.set(Double(gens.generation(of: gens.bootedSystem) ?? -1))
        }
        metrics.applyInProgress.set(to: machine.state.apply == nil ? 0.0 : 1.0)
        return metrics.registry.emitToString()
    }

    public func handle(_ payload: CommandPayload) async throws(WireError) -> EnvelopeReceipt {
        if !started { await start() }
        let now = clock.now()
        let event: ApplyMachine.Event
        switch payload.command {
        case .apply(let bundle):
            event = .applyRequested(id: "apply-\(payload.serial)", serial: payload.serial, bundle: bundle, now: now)
        case .confirm(let c):
            event = .confirmRequested(applySerial: c.applySerial, now: now)
        case .rollback(let r):
            event = .rollbackRequested(reason: r.reason, now: now)
        case .reboot(let r):
            event = .rebootRequested(reason: r.reason, serial: payload.serial, now: now)
        case .stageAgentBinary:
            // The server refuses it on POST /v1/envelopes before the serial is taken; it only authorizes an upload.
            throw WireError(.malformed, "a stageAgentBinary envelope goes with PUT /v1/agent-binary/SHA256")
        }
        let before = machine
        let actions = try machine.handle(event)
        // Effects up to the first step run now (so `persist` is durable before we answer); steps run after.
        var inline: [ApplyMachine.Action] = []
        var rest = actions[...]
        while let a = rest.first, !a.isStep, a != .reboot {
            inline.append(a)
            rest = rest.dropFirst()
        }
        do {
            for a in inline { _ = try await execute(a) }
        } catch {
            machine = before
            throw WireError(.internalError, "cannot persist the agent state: \(error); nothing was changed")
        }
        if rest.first == .reboot {
            // Answer first: the reboot follows once the server says the answer is out (`responseSent`), or
            // after `rebootDelay` at the latest (a caller that never reports it, e.g. a test driving the engine
            // directly). Waiting a fixed delay instead cost every node of a rollout the whole delay.
            let answered = AnswerGate()
            answerGates[payload.serial] = answered
            let (delay, serial) = (rebootDelay, payload.serial)
            let system = self.system
            let logger = self.logger
            Task {
                await answered.wait(atMost: delay)
                forgetAnswerGate(serial)  // when the limit passed first, nobody removed it
                do { try await system.reboot() } catch {
                    logger.error("reboot failed", metadata: ["agent.error": "\(error)"])
                }
            }
            rest = rest.dropFirst()
        }
        if !rest.isEmpty { continueInBackground(Array(rest)) }
        return receipt(for: payload, actionsWereEmpty: actions.isEmpty)
    }

    private func receipt(for payload: CommandPayload, actionsWereEmpty: Bool) -> EnvelopeReceipt {
        let kind = payload.command.kind
        switch payload.command {
        case .apply(let b):
            let id = "apply-\(payload.serial)"
            return EnvelopeReceipt(
                serial: payload.serial, kind: kind, operationID: id, phase: machine.operationStatus?.phase ?? .received,
                message: "apply accepted: staging \(b.files.count) file(s), then nixos-rebuild \(b.action.rawValue)"
                    + (b.flake.map { " --flake path:…#\($0)" } ?? "")
                    + "\(b.upgrade ? (b.flake == nil ? " --upgrade" : " after updating the flake lock") : ""); poll /v1/operations/\(id)")
        case .confirm(let c):
            return EnvelopeReceipt(
                serial: payload.serial, kind: kind, operationID: "apply-\(c.applySerial)",
                phase: .committed,
                message: actionsWereEmpty
                    ? "apply serial \(c.applySerial) was already final or is being committed"
                    : machine.state.apply?.phase == .committing
                        ? "confirmed: making generation \(machine.state.apply?.newGeneration.map(String.init) ?? "?") the boot default (trial boot)"
                        : (machine.state.lastResult?.message ?? "committed"))
        case .rollback:
            let id = machine.operationStatus?.id ?? machine.state.lastResult?.id
            return EnvelopeReceipt(
                serial: payload.serial, kind: kind, operationID: id, phase: .rollingBack,
                message: "rolling back to the previous generation; poll /v1/operations/\(id ?? "")")
        case .reboot(let r):
            return EnvelopeReceipt(
                serial: payload.serial, kind: kind, operationID: nil, phase: machine.operationStatus?.phase,
                message: "rebooting as soon as this answer is out (\(r.reason))")
        case .stageAgentBinary(let b):
            return EnvelopeReceipt(serial: payload.serial, kind: kind, operationID: nil, phase: nil, message: "upload of \(b.sha256)")
        }
    }

    // MARK: executor

    /// Runs the machine on `event` and on every event its steps produce, until it rests.
    private func enqueue(_ event: ApplyMachine.Event) {
        let previous = work
        work = Task {
            await previous?.value
            await self.drive(event)
        }
    }

    private func continueInBackground(_ actions: [ApplyMachine.Action]) {
        let previous = work
        work = Task {
            await previous?.value
            if let next = await self.perform(actions) { await self.drive(next) }
        }
    }

    private func drive(_ first: ApplyMachine.Event) async {
        var next: ApplyMachine.Event? = first
        while let event = next {
            let actions: [ApplyMachine.Action]
            do {
                actions = try machine.handle(event)
            } catch {
                logger.warning("state machine refused an internal event", metadata: ["agent.error": "\(error)"])
                return
            }
            next = await perform(actions)
        }
    }

    /// Carries out actions in order; returns the event that follows (a step's result, `stepsCompleted`, or
    /// `stepFailed` at the first failing step), or nil if the machine rests.
    private func perform(_ actions: [ApplyMachine.Action]) async -> ApplyMachine.Event? {
        var produced: ApplyMachine.Event?
        var hadStep = false
        for action in actions {
            if !action.isStep {
                do {
                    _ = try await execute(action)
                } catch {
                    // Without a durable record no further side effect may run; the persisted state stays valid.
                    logger.critical(
                        "cannot persist the apply state; stopping here", metadata: ["agent.error": "\(error)"])
                    return nil
                }
                continue
            }
            hadStep = true
            TestKillPoints.reached("before:\(Self.name(of: action))")
            do {
                if let e = try await execute(action) { produced = e }
            } catch {
                logger.error(
                    "apply step failed",
                    metadata: ["agent.step": "\(Self.name(of: action))", "agent.error": "\(error)"])
                return .stepFailed("\(Self.name(of: action)): \(error)", now: clock.now())
            }
        }
        return produced ?? (hadStep ? .stepsCompleted(now: clock.now()) : nil)
    }

    /// Carries out one action. Effects (`isStep == false`) return nil; a step returns the event it produced,
    /// if any. One exhaustive switch: a new action does not compile until it is carried out here.
    private func execute(_ action: ApplyMachine.Action) async throws -> ApplyMachine.Event? {
        let opID = machine.state.apply?.id ?? "unknown"
        let log: @Sendable (String) -> Void = { [logs] line in logs.append(opID, line) }
        switch action {
        // Effects.
        case .persist:
            try store.save(machine.state)
            TestKillPoints.reached("persisted:\(machine.state.apply?.phase.rawValue ?? "idle")")
        case .armDeadline(let d):
            armDeadline(d)
        case .cancelDeadline:
            deadlineTask?.cancel()
            deadlineTask = nil
            deadlineDate = nil
        case .reboot:
            logger.notice("rebooting", metadata: ["agent.reason": "\(machine.state.pendingReboot?.reason ?? "")"])
            do { try await system.reboot() } catch {
                logger.error("reboot failed", metadata: ["agent.error": "\(error)"])
            }
        case .finished(let result, let startedAt):
            metrics.record(result, duration: result.finishedAt.timeIntervalSince(startedAt))
            if result.outcome == .rolledBack { metrics.rollbacks.increment() }
            logs.append(result.id, "nk3-agent: \(result.outcome.rawValue): \(result.message)")
            let level: Logger.Level = result.outcome == .failed || result.outcome == .rolledBack ? .warning : .info
            logger.log(
                level: level, "operation finished",
                metadata: [
                    "agent.op": "\(result.id)", "agent.outcome": "\(result.outcome.rawValue)",
                    "agent.message": "\(result.message)",
                ])
        // Steps.
        case .captureBaseline(let names):
            let snapshot = try await system.snapshotConfigFiles(touching: names)
            let channel = try await system.channelState()
            let gens = try await system.generations()
            let loader = await system.trialBootLoader()
            log(
                "nk3-agent: previous generation \(gens.profileGeneration.map(String.init) ?? "none"); saved "
                    + "\(snapshot.presentNames.count) existing file(s) the bundle may change, for restore")
            return .baselineCaptured(
                .init(snapshot: snapshot, channel: channel, generations: gens, trialBootLoader: loader), now: clock.now())
        case .addChannel(let url):
            log("nk3-agent: nix-channel --add \(url) nixos")
            try await system.addChannel(url: url, name: "nixos")
        case .stage(let files):
            log("nk3-agent: landing \(files.count) file(s)")
            try await system.replaceConfigFiles(with: files)
        case .rebuild(let action, let upgrade):
            let flake = machine.state.apply?.bundle.flake
            if let flake {
                log("nk3-agent: \(upgrade ? "updating the flake lock's nixpkgs input, then " : "")nixos-rebuild "
                    + "\(action.rawValue) --flake path:…#\(flake) --no-write-lock-file")
            } else {
                log("nk3-agent: nixos-rebuild \(action.rawValue)\(upgrade ? " --upgrade" : "")")
            }
            let outcome = try await system.rebuild(action, upgrade: upgrade, flake: flake, output: log)
            log("nk3-agent: nixos-rebuild exited \(outcome.exitCode)")
            let after = try await system.generations()
            return .rebuildFinished(outcome, after: after, now: clock.now())
        case .restoreFiles(let snapshot):
            log(
                "nk3-agent: restoring \(snapshot.presentNames.count) saved file(s) and removing "
                    + "\(snapshot.entries.count - snapshot.presentNames.count) the bundle created")
            try await system.restoreConfigFiles(snapshot)
        case .restoreChannel(let saved):
            try await system.restoreChannel(saved)
        case .revertGeneration(let baseline, let action):
            let now = try await system.generations()
            if let target = ApplyMachine.revertActivation(baseline: baseline, action: action, now: now) {
                log("nk3-agent: the system moved (profile \(now.profileGeneration.map(String.init) ?? "?")); re-activating generation \(target.generation) (\(target.mode.rawValue))")
                try await system.activate(generation: target.generation, mode: target.mode)
            }
        case .activatePrevious(let generation, let mode):
            log("nk3-agent: activating previous generation \(generation) (\(mode.rawValue))")
            try await system.activate(generation: generation, mode: mode)
        case .setBootDefault(let generation):
            log("nk3-agent: trial boot: generation \(generation) is the boot loader's default")
            try await system.setBootDefault(generation: generation)
        case .setBootOnce(let generation):
            log(generation.map { "nk3-agent: trial boot: generation \($0) boots once, at the next boot" }
                ?? "nk3-agent: trial boot: clearing the one-shot boot entry")
            try await system.setBootOnce(generation: generation)
        }
        return nil
    }

    private func armDeadline(_ date: Date) {
        deadlineTask?.cancel()
        deadlineDate = date
        let clock = self.clock
        deadlineTask = Task {
            do { try await clock.sleep(until: date) } catch { return }
            self.deadlineReached(date)
        }
    }

    private func deadlineReached(_ date: Date) {
        guard deadlineDate == date else { return }
        deadlineTask = nil
        deadlineDate = nil
        logger.warning("confirm deadline passed; rolling back", metadata: ["agent.deadline": "\(date)"])
        enqueue(.deadlinePassed(now: clock.now()))
    }

    private func kubeletState() async -> KubeletState {
        if let c = kubeletCache, ContinuousClock.now - c.at < .milliseconds(250) { return c.state }
        let s = await system.kubelet(unit: k3sUnit)
        kubeletCache = (ContinuousClock.now, s)
        return s
    }

    static func name(of action: ApplyMachine.Action) -> String {
        switch action {
        case .persist: return "persist"
        case .captureBaseline: return "captureBaseline"
        case .addChannel: return "addChannel"
        case .stage: return "stage"
        case .rebuild: return "rebuild"
        case .restoreFiles: return "restoreFiles"
        case .restoreChannel: return "restoreChannel"
        case .revertGeneration: return "revertGeneration"
        case .activatePrevious: return "activatePrevious"
        case .setBootDefault: return "setBootDefault"
        case .setBootOnce(let g): return g == nil ? "clearBootOnce" : "setBootOnce"
        case .armDeadline: return "armDeadline"
        case .cancelDeadline: return "cancelDeadline"
        case .reboot: return "reboot"
        case .finished: return "finished"
        }
    }
}
