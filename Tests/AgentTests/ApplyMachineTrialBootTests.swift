import Foundation
import NK3Agent
import NK3Protocol
import Testing

/// The pure state machine's trial boot (docs/RELIABILITY.md#trial-boot), driven with events only.
@Suite("ApplyMachine: trial boot")
struct ApplyMachineTrialBootTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let base = ApplyMachineTests()

    /// apply(boot) → baseline (loader `loader`, generation 7) → staged → rebuild ok (generation 8, profile moved).
    func rebuilt(loader: TrialBootLoader?) throws -> (ApplyMachine, [ApplyMachine.Action]) {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "boot-A", bootedSystem: "/nix/store/sys-7", now: t0))
        _ = try m.handle(.applyRequested(id: "apply-1", serial: 1, bundle: base.bundle(.boot), now: t0))
        var b = base.baseline
        b.trialBootLoader = loader
        _ = try m.handle(.baselineCaptured(b, now: t0))
        _ = try m.handle(.stepsCompleted(now: t0))
        let after = base.gens(profile: 8, current: 7)
        let actions = try m.handle(.rebuildFinished(.init(exitCode: 0, output: "", derivationsToBuild: 2), after: after, now: t0))
        return (m, actions)
    }

    /// Armed and awaiting the confirm.
    func armed() throws -> ApplyMachine {
        let r = try rebuilt(loader: .grub)
        var m = r.0
        #expect(r.1 == [.persist, .setBootDefault(generation: 7), .setBootOnce(generation: 8)])
        #expect(m.state.apply?.phase == .armingTrial)
        #expect(m.operationStatus?.phase == .rebuilding, "the coordinator keeps waiting until the trial is armed")
        #expect(throws: WireError.self) { try m.handle(.rebootRequested(reason: "x", serial: 2, now: t0)) }
        let t1 = t0.addingTimeInterval(5)
        #expect(try m.handle(.stepsCompleted(now: t1)) == [.persist, .armDeadline(t1.addingTimeInterval(600))])
        #expect(m.state.apply?.phase == .awaitingConfirm)
        return m
    }

    @Test("with a loader: the previous generation stays the default and the new one boots once; a confirm makes it the default, then COMMITTED")
    func confirmCommits() throws {
        var m = try armed()
        #expect(try m.handle(.started(bootID: "boot-B", bootedSystem: "/nix/store/sys-8", now: t0)).contains(
            .armDeadline(t0.addingTimeInterval(600))), "booted the new generation: the deadline is re-armed")
        let actions = try m.handle(.confirmRequested(applySerial: 1, now: t0))
        #expect(actions == [.cancelDeadline, .persist, .setBootDefault(generation: 8)])
        #expect(m.state.apply?.phase == .committing)
        #expect(try m.handle(.confirmRequested(applySerial: 1, now: t0)) == [], "a repeated confirm is harmless")
        #expect(throws: WireError.self) { try m.handle(.rollbackRequested(reason: "late", now: t0)) }
        // A restart while committing redoes the step.
        #expect(try m.handle(.started(bootID: "boot-B", bootedSystem: "/nix/store/sys-8", now: t0)) == [.setBootDefault(generation: 8)])
        _ = try m.handle(.stepsCompleted(now: t0))
        #expect(m.state.apply == nil)
        #expect(m.state.lastResult?.outcome == .committed)
    }

    @Test("back under a new boot id on the PREVIOUS generation: rolled back (one-shot cleared, profile back), no reboot")
    func fellBack() throws {
        var m = try armed()
        let actions = try m.handle(.started(bootID: "boot-B", bootedSystem: "/nix/store/sys-7", now: t0))
        #expect(actions.contains(.setBootOnce(generation: nil)))
        #expect(actions.contains(.activatePrevious(generation: 7, mode: .boot)))
        let done = try m.handle(.stepsCompleted(now: t0))
        #expect(!done.contains(.reboot))
        #expect(m.state.pendingReboot == nil)
        #expect(m.state.lastResult?.outcome == .rolledBack)
        #expect(m.state.lastResult?.message.contains("trial boot failed") == true)
    }

    @Test("an agent restart under the same boot id changes nothing; arming is redone after a restart mid-arming")
    func restarts() throws {
        var (m, _) = try rebuilt(loader: .systemdBoot)
        #expect(try m.handle(.started(bootID: "boot-A", bootedSystem: "/nix/store/sys-7", now: t0))
            == [.setBootDefault(generation: 7), .setBootOnce(generation: 8)])
        _ = try m.handle(.stepsCompleted(now: t0))
        let same = try m.handle(.started(bootID: "boot-A", bootedSystem: "/nix/store/sys-7", now: t0))
        #expect(same == [.armDeadline(t0.addingTimeInterval(600))], "not a reboot: nothing fell back")
    }

    @Test("arming fails: rolled back like a deadline (files, channel, one-shot cleared, previous generation)")
    func armingFails() throws {
        var (m, _) = try rebuilt(loader: .grub)
        let actions = try m.handle(.stepFailed("grub-reboot exited 1", now: t0))
        #expect(m.state.apply?.phase == .rollingBack)
        #expect(actions.contains(.activatePrevious(generation: 7, mode: .boot)))
        #expect(actions.contains(.setBootOnce(generation: nil)))
        _ = try m.handle(.stepsCompleted(now: t0))
        #expect(m.state.lastResult?.message.contains("could not arm the trial boot") == true)
    }

    @Test("without a loader: a boot apply awaits the confirm at once (dead-man), no boot-loader action")
    func deadMan() throws {
        let (m, actions) = try rebuilt(loader: nil)
        #expect(actions == [.persist, .armDeadline(t0.addingTimeInterval(600))])
        #expect(m.state.apply?.trialBoot == nil)
    }
}
