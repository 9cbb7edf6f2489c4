#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Protocol

// MARK: - State machine
//
// One apply at a time. The machine is pure: `handle(_:)` takes an event, updates `state` and returns the
// actions the executor (`ApplyEngine`) carries out in order. `.persist` always comes before the side effect
// it protects, so a crash at any point resumes from a state that says what may have happened.
//
//   (idle) ──applyRequested──▶ received            [persist, captureBaseline(bundle's names)]
//   received ──baselineCaptured──▶ staging          [persist, addChannel?, stage(new files)]
//   staging ──stepsCompleted──▶ rebuilding          [persist, rebuild(action, upgrade)]
//   rebuilding ──rebuildFinished(fail)──▶ reverting [persist, restoreFiles, restoreChannel, revertGeneration]
//   rebuilding ──rebuildFinished(ok, same system, nothing built)──▶ (idle) result UNCHANGED
//   rebuilding ──rebuildFinished(ok)──▶ awaitingConfirm   [persist, armDeadline(now + confirmTimeout)]
//   rebuilding ──rebuildFinished(ok, boot, loader has a one-shot)──▶ armingTrial
//                      [persist, setBootDefault(previous), setBootOnce(new)]
//   armingTrial ──stepsCompleted──▶ awaitingConfirm      [persist, armDeadline(now + confirmTimeout)]
//   armingTrial ──stepFailed──▶ rollingBack
//   awaitingConfirm(trial) ──confirm──▶ committing       [cancelDeadline, persist, setBootDefault(new)]
//   committing ──stepsCompleted──▶ (idle) result COMMITTED
//   reverting ──stepsCompleted──▶ (idle) result FAILED (reverted)
//   awaitingConfirm ──confirm(serial matches)──▶ (idle) result COMMITTED   [cancelDeadline, persist]
//   awaitingConfirm ──deadlinePassed | rollbackRequested──▶ rollingBack
//                      [cancelDeadline, persist, restoreFiles, restoreChannel, activatePrevious(gen, mode)]
//   rollingBack ──stepsCompleted──▶ (idle) result ROLLED_BACK  [persist, reboot if the new boot generation runs]
//   any step ──stepFailed──▶ reverting (before the rebuild finished) or (idle) FAILED (while restoring, or when
//                            the baseline could not be saved: then nothing was changed)
//
// The baseline saves every name the bundle will write plus every managed file (staging removes those the
// bundle drops): content, mode, link target, or "absent". It is persisted before staging, so a revert or
// rollback puts back exactly that set: files the bundle created are removed, files it overwrote (managed or
// not, e.g. the machine's hardware-configuration.nix) come back byte-, mode- and link-exact.
//
// Agent start (`started(bootID)`), per persisted phase:
//   received/staging/rebuilding → reverting (the apply was interrupted; nothing is trusted, everything restored)
//   reverting/rollingBack       → redo the same (idempotent) restore steps
//   awaitingConfirm             → boot-mode apply under a new boot id: re-arm the deadline from now;
//                                 otherwise arm the persisted deadline (fires at once if already past).
//                                 A trial boot whose new boot runs another system than the new one fell back
//                                 to the boot loader's default: roll back (no reboot: the old one runs) → ROLLED BACK
//   armingTrial / committing    → redo the same (idempotent) boot-loader steps
//   pendingReboot with the same boot id → the reboot did not happen: reboot again
//
// Boot mode: `action == .boot`, or a `switch` whose activation exited 100 ("reboot needed",
// docs/UPSTREAM.md#nixos-rebuild).
// Rolling back in boot mode makes the previous generation the boot default again and, if the new generation
// is the one running, requests a reboot.
//
// Trial boot (docs/RELIABILITY.md#trial-boot): where the boot loader has a one-shot entry, a `boot` apply keeps
// the previous generation as the loader's default and boots the new one once. A new generation whose kernel
// never boots, or that never starts the agent, is left by the next reset (watchdog, `panic=N`, a person): the
// loader boots the default, the previous generation. Only the confirm makes the new generation the default.

/// The pure apply state machine (no I/O). See the comment above for states and transitions.
public struct ApplyMachine: Sendable {
    /// Inputs.
    public enum Event: Sendable {
        /// `bootedSystem`: `/run/booted-system` of this boot, when known (a trial boot checks what came up).
        case started(bootID: String, bootedSystem: String? = nil, now: Date)
        case applyRequested(id: String, serial: UInt64, bundle: ApplyBundle, now: Date)
        case baselineCaptured(Baseline, now: Date)
        case rebuildFinished(RebuildResult, after: GenerationState, now: Date)
        case stepsCompleted(now: Date)
        case stepFailed(String, now: Date)
        case confirmRequested(applySerial: UInt64, now: Date)
        case rollbackRequested(reason: String, now: Date)
        case deadlinePassed(now: Date)
        case rebootRequested(reason: String, serial: UInt64, now: Date)
    }

    /// Outputs, carried out in order by the executor.
    public enum Action: Sendable, Hashable {
        /// Write `state` durably before going on.
        case persist
        /// Save what the configuration directory holds under these names and the managed files (content, mode,
        /// link target, or absent), the channel and the generations → `.baselineCaptured`.
        case captureBaseline(touching: Set<String>)
        /// `nix-channel --add URL nixos`.
        case addChannel(url: String)
        /// Replace the managed files with these.
        case stage([String: String])
        /// `nixos-rebuild ACTION [--upgrade]` → `.rebuildFinished`.
        case rebuild(RebuildAction, upgrade: Bool)
        /// Put back exactly what the snapshot saved (names saved absent are removed).
        case restoreFiles(ConfigSnapshot)
        case restoreChannel(ChannelState)
        /// Check, don't assume (docs/UPSTREAM.md#nixos-rebuild): read the generations and, if the profile or the live
        /// system moved away from the baseline, move it back (`ApplyMachine.revertActivation`).
        case revertGeneration(Baseline, RebuildAction)
        /// Activate the previous generation (dead-man rollback).
        case activatePrevious(generation: Int, mode: ActivationMode)
        /// Trial boot: make this generation the boot loader's default (profile unchanged).
        case setBootDefault(generation: Int)
        /// Trial boot: boot this generation once at the next boot (nil: clear a pending one-shot).
        case setBootOnce(generation: Int?)
        case armDeadline(Date)
        case cancelDeadline
        /// Reboot the machine (after persisting).
        case reboot
        /// An operation ended (for logs and metrics).
        case finished(OperationResult, startedAt: Date)

        /// Steps touch the machine and are followed by a completion event.
        var isStep: Bool {
            switch self {
            case .captureBaseline, .addChannel, .stage, .rebuild, .restoreFiles, .restoreChannel, .revertGeneration,
                .activatePrevious, .setBootDefault, .setBootOnce:
                return true
            case .persist, .armDeadline, .cancelDeadline, .reboot, .finished:
                return false
            }
        }
    }

    /// The current state (persisted by the executor on `.persist`).
    public private(set) var state: State

    /// Starts from a persisted state (or a fresh one).
    public init(state: State = State()) { self.state = state }

    /// Handles one event. Throws a `WireError` to refuse a request (busy, invalid state); a refused request
    /// changes nothing.
    public mutating func handle(_ event: Event) throws(WireError) -> [Action] {
        switch event {
        case .started(let bootID, let bootedSystem, let now):
            return started(bootID: bootID, bootedSystem: bootedSystem, now: now)

        case .applyRequested(let id, let serial, let bundle, let now):
            if let a = state.apply {
                throw WireError(
                    .busy,
                    "apply serial \(a.serial) (operation \(a.id)) is \(a.phase.wire.rawValue); one apply at a time — "
                        + (a.phase == .awaitingConfirm
                            ? "confirm or roll it back first" : "wait for it to finish"))
            }
            if let problem = bundle.validationProblem() { throw WireError(.malformed, problem) }
            state.apply = Apply(id: id, serial: serial, bundle: bundle, startedAt: now, phase: .received)
            return [.persist, .captureBaseline(touching: Set(bundle.files.keys))]

        case .baselineCaptured(let baseline, _):
            guard var a = state.apply, a.phase == .received else { return [] }
            a.baseline = baseline
            a.phase = .staging
            state.apply = a
            var actions: [Action] = [.persist]
            if let url = a.bundle.nixChannel, baseline.channel.url(named: "nixos") != url {
                actions.append(.addChannel(url: url))
            }
            actions.append(.stage(a.bundle.files))
            return actions

        case .rebuildFinished(let outcome, let after, let now):
            guard var a = state.apply, a.phase == .rebuilding, let base = a.baseline else { return [] }
            a.derivationsToBuild = outcome.derivationsToBuild
            a.pathsToFetch = outcome.pathsToFetch
            let action = a.bundle.action
            let profileMoved =
                after.profileGeneration != base.generations.profileGeneration
                || after.profileSystem != base.generations.profileSystem
            // 100 is "reboot needed" only once the new generation was installed; from nix itself it is a build
            // failure (docs/UPSTREAM.md#nixos-rebuild: bash passes nix's 100, ng passes switch-to-configuration's 100).
            let rebootNeeded = outcome.exitCode == 100 && action != .test && profileMoved
            guard outcome.exitCode == 0 || rebootNeeded else {
                let command =
                    a.bundle.flake.map { "\(a.bundle.upgrade ? "nix flake lock --update-input nixpkgs, then " : "")nixos-rebuild "
                        + "\(action.rawValue) --flake path:…#\($0)" }
                    ?? "nixos-rebuild \(action.rawValue)\(a.bundle.upgrade ? " --upgrade" : "")"
                a.failure = "\(command) failed (exit \(outcome.exitCode)): " + Self.errorText(outcome.output)
                state.apply = a
                return startRevert()
            }
            let oldSystem = action == .test ? base.generations.currentSystem : base.generations.profileSystem
            let newSystem = action == .test ? after.currentSystem : after.profileSystem
            if newSystem == oldSystem, (outcome.derivationsToBuild ?? 0) == 0, !rebootNeeded {
                state.apply = a
                let what = a.bundle.upgrade ? "no upgrade needed" : "no change"
                return finish(
                    .unchanged, "\(what): system \(newSystem ?? "?") is already the \(action.rawValue) configuration",
                    now: now)
            }
            a.newSystem = newSystem
            a.newGeneration = action == .test ? after.generation(of: after.currentSystem) : after.profileGeneration
            a.bootMode = action == .boot || rebootNeeded
            a.rebootRequiredByRebuild = rebootNeeded
            a.bootIDAtRebuild = state.bootID
            a.deadlineBootID = state.bootID
            if action == .boot, let loader = base.trialBootLoader, let prev = base.generations.profileGeneration,
                let new = a.newGeneration, new != prev
            {
                a.trialBoot = loader
                a.phase = .armingTrial
                state.apply = a
                return [.persist] + armTrialActions()
            }
            return awaitConfirm(&a, now: now)

        case .stepsCompleted(let now):
            guard var a = state.apply else { return [] }
            switch a.phase {
            case .received, .awaitingConfirm:
                return []
            case .armingTrial:
                return awaitConfirm(&a, now: now)
            case .committing:
                let gen = a.newGeneration.map { "generation \($0)" } ?? "the new system"
                return finish(.committed, "confirmed: \(gen) kept and made the boot default (trial boot)", now: now)
            case .staging:
                a.phase = .rebuilding
                state.apply = a
                return [.persist, .rebuild(a.bundle.action, upgrade: a.bundle.upgrade)]
            case .rebuilding:
                return []
            case .reverting:
                let why = a.failure ?? "apply failed"
                return finish(.failed, "\(why) — old files and channel restored, generation checked", now: now)
            case .rollingBack:
                return finishRollback(now: now)
            }

        case .stepFailed(let message, let now):
            guard var a = state.apply else { return [] }
            switch a.phase {
            case .received where a.baseline == nil:
                // Saving the baseline failed: nothing was changed, so there is nothing to restore.
                return finish(.failed, "could not save the current files before staging: \(message); nothing was changed", now: now)
            case .received, .staging, .rebuilding:
                a.failure = "\(a.phase == .rebuilding ? "nixos-rebuild could not run" : "staging failed"): \(message)"
                state.apply = a
                return startRevert()
            case .reverting:
                return finish(
                    .failed,
                    "\(a.failure ?? "apply failed"); restoring the previous state ALSO failed: \(message) — "
                        + "check /etc/nixos, the channel and the system profile by hand",
                    now: now)
            case .rollingBack:
                return finish(
                    .failed,
                    "rollback (\(a.rollbackReason ?? "requested")) failed: \(message) — check the system profile and "
                        + "boot default by hand",
                    now: now)
            case .armingTrial:
                return startRollback(reason: "could not arm the trial boot: \(message)", now: now)
            case .committing:
                let gen = a.newGeneration.map { "generation \($0)" } ?? "the new system"
                return finish(
                    .failed,
                    "confirmed, but making \(gen) the boot default failed: \(message) — it runs now, but the next "
                        + "boot runs the previous default; run its bin/switch-to-configuration boot by hand",
                    now: now)
            case .awaitingConfirm:
                return []
            }

        case .confirmRequested(let applySerial, let now):
            guard let a = state.apply else {
                if let r = state.lastResult, r.serial == applySerial, r.outcome == .committed || r.outcome == .unchanged {
                    return []  // already final: confirming again is harmless
                }
                throw WireError(
                    .invalidState,
                    "nothing awaits confirmation: no apply in progress"
                        + (state.lastResult.map { " (last: serial \($0.serial) \($0.outcome.rawValue))" } ?? ""))
            }
            guard a.serial == applySerial else {
                throw WireError(
                    .invalidState,
                    "confirm names apply serial \(applySerial), but the apply in progress has serial \(a.serial)")
            }
            if a.phase == .committing { return [] }  // confirmed already; making it the default is under way
            guard a.phase == .awaitingConfirm else {
                throw WireError(
                    .invalidState,
                    "apply serial \(a.serial) is \(a.phase.wire.rawValue); it can be confirmed once it awaits confirmation")
            }
            let gen = a.newGeneration.map { "generation \($0)" } ?? "the new system"
            if a.trialBoot != nil, let new = a.newGeneration {
                var c = a
                c.phase = .committing
                c.deadline = nil
                state.apply = c
                return [.cancelDeadline, .persist, .setBootDefault(generation: new)]
            }
            return [.cancelDeadline] + finish(.committed, "confirmed: \(gen) kept", now: now)

        case .rollbackRequested(let reason, let now):
            guard let a = state.apply else {
                throw WireError(.invalidState, "no apply in progress to roll back")
            }
            switch a.phase {
            case .awaitingConfirm:
                return startRollback(reason: "rollback requested: \(reason)", now: now)
            case .rollingBack:
                return []
            case .committing:
                throw WireError(.invalidState, "apply serial \(a.serial) was confirmed; it can no longer be rolled back")
            case .received, .staging, .rebuilding, .reverting, .armingTrial:
                throw WireError(
                    .busy,
                    "apply serial \(a.serial) is \(a.phase.wire.rawValue); a rollback can be requested once it awaits "
                        + "confirmation (a failed rebuild reverts by itself)")
            }

        case .deadlinePassed(let now):
            guard let a = state.apply, a.phase == .awaitingConfirm, let d = a.deadline, now >= d else { return [] }
            return startRollback(
                reason: "no confirm before the deadline \(d.formatted(.iso8601))", now: now)

        case .rebootRequested(let reason, let serial, let now):
            if let a = state.apply, a.phase != .awaitingConfirm {
                throw WireError(
                    .busy, "apply serial \(a.serial) is \(a.phase.wire.rawValue); reboot after it finishes")
            }
            state.pendingReboot = PendingReboot(
                bootID: state.bootID ?? "", reason: reason, serial: serial, requestedAt: now, recordResult: true)
            return [.persist, .reboot]
        }
    }

    // MARK: transitions

    private mutating func started(bootID: String, bootedSystem: String?, now: Date) -> [Action] {
        state.bootID = bootID
        var actions: [Action] = []
        if let p = state.pendingReboot {
            if p.bootID == bootID {
                // Asked for a reboot, persisted, then died before it happened: do it now.
                return [.reboot]
            }
            state.pendingReboot = nil
            if p.recordResult {
                state.lastResult = OperationResult(
                    id: "reboot-\(p.serial ?? 0)", serial: p.serial ?? 0, outcome: .rebooted,
                    message: "rebooted (\(p.reason)); new boot id \(bootID)", finishedAt: now)
            }
            actions.append(.persist)
        }
        guard var a = state.apply else { return actions }
        switch a.phase {
        case .received, .staging, .rebuilding:
            guard a.baseline != nil else {
                return finish(.failed, "interrupted by an agent restart before anything was changed", now: now)
            }
            a.failure = "interrupted by an agent restart while \(a.phase == .rebuilding ? "nixos-rebuild ran" : "staging files")"
            state.apply = a
            return startRevert()
        case .reverting:
            return revertActions()
        case .rollingBack:
            return rollbackActions()
        case .armingTrial:
            return actions + armTrialActions()
        case .committing:
            return actions + (a.newGeneration.map { [.setBootDefault(generation: $0)] } ?? [])
        case .awaitingConfirm:
            if a.trialBoot != nil, a.deadlineBootID != bootID, let booted = bootedSystem, booted != a.newSystem {
                // The one-shot boot of the new generation did not reach this agent (kernel, initrd or agent never
                // came up) and a reset booted the loader's default: the previous generation.
                a.trialFellBack = true
                state.apply = a
                let prev = a.baseline?.generations.profileGeneration.map { "generation \($0)" } ?? "the previous generation"
                let new = a.newGeneration.map { "generation \($0)" } ?? "the new generation"
                return actions + startRollback(
                    reason: "trial boot failed: the node came back on \(prev), not \(new) — the new generation did "
                        + "not boot or did not start the agent, and the boot loader booted its default", now: now)
            }
            if a.bootMode, a.deadlineBootID != bootID {
                // The reboot into the new generation happened: the deadline is re-armed and counts from now.
                let d = now.addingTimeInterval(TimeInterval(a.bundle.confirmTimeoutSeconds))
                a.deadline = d
                a.deadlineBootID = bootID
                state.apply = a
                return [.persist, .armDeadline(d)]
            }
            return actions + (a.deadline.map { [.armDeadline($0)] } ?? [])
        }
    }

    private mutating func awaitConfirm(_ a: inout Apply, now: Date) -> [Action] {
        let deadline = now.addingTimeInterval(TimeInterval(a.bundle.confirmTimeoutSeconds))
        a.deadline = deadline
        a.phase = .awaitingConfirm
        state.apply = a
        return [.persist, .armDeadline(deadline)]
    }

    /// Previous generation stays the boot default; the new one is booted once.
    private func armTrialActions() -> [Action] {
        guard let a = state.apply, let prev = a.baseline?.generations.profileGeneration, let new = a.newGeneration
        else { return [] }
        return [.setBootDefault(generation: prev), .setBootOnce(generation: new)]
    }

    private mutating func startRevert() -> [Action] {
        guard var a = state.apply else { return [] }
        a.phase = .reverting
        state.apply = a
        return [.persist] + revertActions()
    }

    private func revertActions() -> [Action] {
        guard let a = state.apply, let base = a.baseline else { return [] }
        return [.restoreFiles(Self.restoreSet(a, base)), .restoreChannel(base.channel), .revertGeneration(base, a.bundle.action)]
    }

    private mutating func startRollback(reason: String, now: Date) -> [Action] {
        guard var a = state.apply else { return [] }
        a.phase = .rollingBack
        a.rollbackReason = reason
        state.apply = a
        return [.cancelDeadline, .persist] + rollbackActions()
    }

    private func rollbackActions() -> [Action] {
        guard let a = state.apply, let base = a.baseline else { return [] }
        var actions: [Action] = [.restoreFiles(Self.restoreSet(a, base)), .restoreChannel(base.channel)]
        // A one-shot still pending would boot the rolled-back generation at the next boot.
        if a.trialBoot != nil { actions.append(.setBootOnce(generation: nil)) }
        if let target = Self.rollbackTarget(a) {
            actions.append(.activatePrevious(generation: target.generation, mode: target.mode))
        }
        return actions
    }

    private mutating func finishRollback(now: Date) -> [Action] {
        guard let a = state.apply else { return [] }
        let target = Self.rollbackTarget(a)
        // Boot mode: the previous generation is the boot default again. If the new one is running (we booted
        // into it, or its activation asked for a reboot), a reboot brings the old one back.
        // A trial boot that fell back already runs the previous generation.
        let needsReboot =
            a.bootMode && a.trialFellBack != true && (a.rebootRequiredByRebuild || state.bootID != a.bootIDAtRebuild)
        var message = "rolled back to generation \(target.map { "\($0.generation)" } ?? "?")"
        message += a.trialFellBack == true ? " (running; the boot loader booted it)" : a.bootMode ? " as the boot default" : " (live)"
        if needsReboot { message += "; rebooting into it" }
        message += " — \(a.rollbackReason ?? "rollback")"
        state.rollbacksTotal += 1
        var actions = finish(.rolledBack, message, now: now)
        if needsReboot {
            state.pendingReboot = PendingReboot(
                bootID: state.bootID ?? "", reason: "rollback of apply serial \(a.serial)", serial: nil,
                requestedAt: now, recordResult: false)
            actions.append(.persist)
            actions.append(.reboot)
        }
        return actions
    }

    private mutating func finish(_ outcome: OperationResult.Outcome, _ message: String, now: Date) -> [Action] {
        guard let a = state.apply else { return [] }
        let result = OperationResult(
            id: a.id, serial: a.serial, outcome: outcome, message: message, finishedAt: now,
            derivationsBuilt: a.derivationsToBuild, pathsFetched: a.pathsToFetch)
        state.lastResult = result
        state.apply = nil
        return [.persist, .finished(result, startedAt: a.startedAt)]
    }
}
