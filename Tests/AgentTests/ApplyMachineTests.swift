import Foundation
import NK3Agent
import NK3Protocol
import Testing

/// The pure state machine, driven with events only (no I/O in these tests, as async-http-client tests
/// its connection-pool state machine).
@Suite("ApplyMachine")
struct ApplyMachineTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let old = ["configuration.nix": "old"]
    let new = ["configuration.nix": "new", "extra.nix": "x"]
    let channel = ChannelState(listFile: "https://channels.nixos.org/nixos-24.05 nixos\n", profileGeneration: 3)

    func gens(profile: Int, current: Int, booted: Int? = nil) -> GenerationState {
        let all = Dictionary(uniqueKeysWithValues: (1...max(profile, current)).map { ($0, "/nix/store/sys-\($0)") })
        return GenerationState(
            currentSystem: all[current], bootedSystem: all[booted ?? current], profileGeneration: profile,
            generations: all)
    }

    /// What a revert restores: the saved file, and extra.nix (created by the bundle) removed.
    var restored: ConfigSnapshot {
        var s = ConfigSnapshot(files: old)
        s.entries["extra.nix"] = .absent
        return s
    }

    var baseline: ApplyMachine.Baseline { .init(files: old, channel: channel, generations: gens(profile: 7, current: 7)) }

    /// A machine that has been through apply → baseline → staged → rebuild ok (new generation 8).
    func awaiting(_ action: RebuildAction = .switch, exit: Int32 = 0) throws -> ApplyMachine {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "boot-A", now: t0))
        #expect(try m.handle(.applyRequested(id: "apply-1", serial: 1, bundle: bundle(action), now: t0)) == [.persist, .captureBaseline(touching: Set(new.keys))])
        #expect(try m.handle(.baselineCaptured(baseline, now: t0)) == [.persist, .stage(new)])
        #expect(try m.handle(.stepsCompleted(now: t0)) == [.persist, .rebuild(action, upgrade: false)])
        let after = gens(profile: 8, current: action == .boot ? 7 : 8)
        let actions = try m.handle(.rebuildFinished(.init(exitCode: exit, output: "", derivationsToBuild: 2), after: after, now: t0))
        #expect(actions == [.persist, .armDeadline(t0.addingTimeInterval(600))])
        return m
    }

    func bundle(_ action: RebuildAction = .switch, channel: String? = nil) -> ApplyBundle {
        ApplyBundle(files: new, action: action, nixChannel: channel, confirmTimeoutSeconds: 600)
    }

    @Test("happy path: confirm with the matching serial commits")
    func commit() throws {
        var m = try awaiting()
        #expect(m.state.apply?.phase == .awaitingConfirm)
        #expect(m.operationStatus?.previousGeneration == 7)
        #expect(m.operationStatus?.newGeneration == 8)
        #expect(throws: WireError.self) { try m.handle(.confirmRequested(applySerial: 2, now: t0)) }
        let actions = try m.handle(.confirmRequested(applySerial: 1, now: t0))
        #expect(actions.first == .cancelDeadline)
        #expect(actions.contains(.persist))
        #expect(m.state.apply == nil)
        #expect(m.state.lastResult?.outcome == .committed)
    }

    @Test("second apply while one is in flight → busy, state unchanged")
    func busy() throws {
        var m = try awaiting()
        let before = m.state
        do {
            _ = try m.handle(.applyRequested(id: "apply-2", serial: 2, bundle: bundle(), now: t0))
            Issue.record("expected busy")
        } catch {
            #expect(error.code == .busy)
            #expect(error.message.contains("confirm or roll it back first"))
        }
        #expect(m.state == before)
    }

    @Test("a channel is added only when it differs from the saved one")
    func channelAdd() throws {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "b", now: t0))
        _ = try m.handle(.applyRequested(id: "a", serial: 1, bundle: bundle(channel: "https://channels.nixos.org/nixos-24.11"), now: t0))
        #expect(try m.handle(.baselineCaptured(baseline, now: t0)) == [.persist, .addChannel(url: "https://channels.nixos.org/nixos-24.11"), .stage(new)])
    }

    @Test("rebuild failure → revert files, channel and (checked) generation → FAILED with the tool's error text")
    func failure() throws {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "b", now: t0))
        _ = try m.handle(.applyRequested(id: "a", serial: 1, bundle: bundle(), now: t0))
        _ = try m.handle(.baselineCaptured(baseline, now: t0))
        _ = try m.handle(.stepsCompleted(now: t0))
        let out = "building the system configuration...\nerror: undefined variable 'foo'\n       at /etc/nixos/configuration.nix:3:5\n"
        let actions = try m.handle(.rebuildFinished(.init(exitCode: 1, output: out), after: gens(profile: 7, current: 7), now: t0))
        #expect(actions == [.persist, .restoreFiles(restored), .restoreChannel(channel), .revertGeneration(baseline, .switch)])
        _ = try m.handle(.stepsCompleted(now: t0))
        #expect(m.state.lastResult?.outcome == .failed)
        #expect(m.state.lastResult?.message.contains("error: undefined variable 'foo'") == true)
    }

    @Test("exit 100 without a new generation is nix's build failure, not 'reboot needed' (docs/UPSTREAM.md#nixos-rebuild)")
    func exit100Ambiguity() throws {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "b", now: t0))
        _ = try m.handle(.applyRequested(id: "a", serial: 1, bundle: bundle(), now: t0))
        _ = try m.handle(.baselineCaptured(baseline, now: t0))
        _ = try m.handle(.stepsCompleted(now: t0))
        _ = try m.handle(.rebuildFinished(.init(exitCode: 100, output: "error: build of '/nix/store/x.drv' failed"), after: gens(profile: 7, current: 7), now: t0))
        #expect(m.state.apply?.phase == .reverting)
        // With the profile moved, 100 means the activation wants a reboot: awaiting confirm in boot mode.
        let m2 = try awaiting(.switch, exit: 100)
        #expect(m2.state.apply?.bootMode == true)
    }

    @Test("revertActivation: check, don't assume (docs/UPSTREAM.md#nixos-rebuild)")
    func revertDecision() {
        let b = baseline
        func decide(_ a: RebuildAction, _ g: GenerationState) -> String? {
            ApplyMachine.revertActivation(baseline: b, action: a, now: g).map { "\($0.generation) \($0.mode.rawValue)" }
        }
        #expect(decide(.switch, gens(profile: 7, current: 7)) == nil)
        #expect(decide(.switch, gens(profile: 8, current: 7)) == "7 switch")
        #expect(decide(.switch, gens(profile: 7, current: 8)) == "7 switch", "live moved, profile not")
        #expect(decide(.boot, gens(profile: 8, current: 7)) == "7 boot")
        #expect(decide(.test, gens(profile: 7, current: 8)) == "7 test")
    }

    @Test("deadline: switch rolls back live; early or stale timers do nothing")
    func deadlineSwitch() throws {
        var m = try awaiting()
        #expect(try m.handle(.deadlinePassed(now: t0.addingTimeInterval(599))) == [])
        let actions = try m.handle(.deadlinePassed(now: t0.addingTimeInterval(600)))
        #expect(actions == [.cancelDeadline, .persist, .restoreFiles(restored), .restoreChannel(channel), .activatePrevious(generation: 7, mode: .switch)])
        let done = try m.handle(.stepsCompleted(now: t0.addingTimeInterval(601)))
        #expect(!done.contains(.reboot))
        #expect(m.state.lastResult?.outcome == .rolledBack)
        #expect(m.state.rollbacksTotal == 1)
    }

    @Test("boot: a new boot id re-arms the deadline from that moment; expiry → old boot default + reboot")
    func bootRearm() throws {
        var m = try awaiting(.boot)
        let later = t0.addingTimeInterval(300)
        // Agent restarted in the same boot: the persisted deadline stands.
        #expect(try m.handle(.started(bootID: "boot-A", now: later)) == [.armDeadline(t0.addingTimeInterval(600))])
        // After the reboot: re-armed from now.
        let rebooted = t0.addingTimeInterval(400)
        #expect(try m.handle(.started(bootID: "boot-B", now: rebooted)) == [.persist, .armDeadline(rebooted.addingTimeInterval(600))])
        // A second restart in boot-B does not push the deadline again.
        #expect(try m.handle(.started(bootID: "boot-B", now: rebooted.addingTimeInterval(10))) == [.armDeadline(rebooted.addingTimeInterval(600))])
        #expect(try m.handle(.deadlinePassed(now: t0.addingTimeInterval(600))) == [], "the old deadline no longer counts")
        let actions = try m.handle(.deadlinePassed(now: rebooted.addingTimeInterval(600)))
        #expect(actions.last == .activatePrevious(generation: 7, mode: .boot))
        let done = try m.handle(.stepsCompleted(now: rebooted.addingTimeInterval(601)))
        #expect(done.last == .reboot)
        #expect(m.state.pendingReboot?.bootID == "boot-B")
        // The reboot did not happen (same boot id at start): reboot again. A new boot id clears it.
        #expect(try m.handle(.started(bootID: "boot-B", now: rebooted.addingTimeInterval(700))) == [.reboot])
        _ = try m.handle(.started(bootID: "boot-C", now: rebooted.addingTimeInterval(800)))
        #expect(m.state.pendingReboot == nil)
        #expect(m.state.lastResult?.outcome == .rolledBack, "a rollback's reboot does not overwrite the result")
    }

    @Test("boot apply that never rebooted: rolling back restores the default without a reboot")
    func bootNoReboot() throws {
        var m = try awaiting(.boot)
        _ = try m.handle(.deadlinePassed(now: t0.addingTimeInterval(600)))
        let done = try m.handle(.stepsCompleted(now: t0.addingTimeInterval(601)))
        #expect(!done.contains(.reboot))
    }

    @Test("restart mid-apply: staging and rebuilding revert; rollingBack redoes the rollback")
    func restartRecovery() throws {
        for stop in 0..<3 {
            var m = ApplyMachine()
            _ = try m.handle(.started(bootID: "b", now: t0))
            _ = try m.handle(.applyRequested(id: "a", serial: 1, bundle: bundle(), now: t0))
            if stop == 0 {
                // Nothing was touched before the baseline was recorded.
                _ = try m.handle(.started(bootID: "b", now: t0))
                #expect(m.state.lastResult?.outcome == .failed)
                continue
            }
            _ = try m.handle(.baselineCaptured(baseline, now: t0))
            if stop == 2 { _ = try m.handle(.stepsCompleted(now: t0)) }
            let actions = try m.handle(.started(bootID: "b", now: t0))
            #expect(actions == [.persist, .restoreFiles(restored), .restoreChannel(channel), .revertGeneration(baseline, .switch)])
            #expect(m.state.apply?.failure?.contains("interrupted by an agent restart") == true)
        }
        var m = try awaiting()
        _ = try m.handle(.rollbackRequested(reason: "r", now: t0))
        #expect(try m.handle(.started(bootID: "boot-A", now: t0)) == [.restoreFiles(restored), .restoreChannel(channel), .activatePrevious(generation: 7, mode: .switch)])
    }

    @Test("reboot while a rebuild runs is refused; while awaiting confirm it is accepted")
    func rebootRules() throws {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "b", now: t0))
        _ = try m.handle(.applyRequested(id: "a", serial: 1, bundle: bundle(), now: t0))
        #expect(throws: WireError.self) { try m.handle(.rebootRequested(reason: "x", serial: 2, now: t0)) }
        var m2 = try awaiting(.boot)
        #expect(try m2.handle(.rebootRequested(reason: "x", serial: 2, now: t0)) == [.persist, .reboot])
    }

    @Test("state round-trips through JSON (it is what the agent persists)")
    func codable() throws {
        let m = try awaiting(.boot)
        let data = try CanonicalJSON.encode(m.state)
        #expect(try CanonicalJSON.decode(ApplyMachine.State.self, from: data) == m.state)
    }

    @Test("plan counts: current, singular and Nix ≤ 2.3 wordings (docs/UPSTREAM.md#nixos-rebuild)")
    func planCounts() {
        let current = "these 12 derivations will be built:\n  /nix/store/a.drv\nthese 3 paths will be fetched (1.2 MiB download, 5.0 MiB unpacked):\n  /nix/store/b\n"
        func c(_ s: String) -> String { let r = RebuildOutputParser.counts(in: s); return "\(r.derivations.map(String.init) ?? "nil") \(r.paths.map(String.init) ?? "nil")" }
        #expect(c(current) == "12 3")
        #expect(c("this derivation will be built:\n  /nix/store/a.drv\nthis path will be fetched (0.1 MiB download, 0.2 MiB unpacked):\n  /nix/store/b\n") == "1 1")
        let old = "these derivations will be built:\n  /nix/store/a.drv\n  /nix/store/b.drv\nthese paths will be fetched (0.50 MiB download, 2.00 MiB unpacked):\n  /nix/store/c\nbuilding '/nix/store/a.drv'...\n"
        #expect(c(old) == "2 1")
        #expect(c("building the system configuration...\n") == "nil nil")
    }

    @Test("saving the baseline fails: FAILED at once with nothing to restore (not stuck reverting)")
    func captureFails() throws {
        var m = ApplyMachine()
        _ = try m.handle(.started(bootID: "b", now: t0))
        _ = try m.handle(.applyRequested(id: "a", serial: 1, bundle: bundle(), now: t0))
        let actions = try m.handle(.stepFailed("captureBaseline: /etc/nixos/extra.nix is a directory", now: t0))
        #expect(m.state.apply == nil)
        #expect(m.state.lastResult?.outcome == .failed)
        #expect(m.state.lastResult?.message.contains("nothing was changed") == true)
        #expect(!actions.contains { if case .restoreFiles = $0 { return true } else { return false } })
    }

    @Test("a baseline persisted by an agent before snapshots (managed files' text) still restores, and removes the bundle's new files")
    func legacyBaseline() throws {
        var m = try awaiting()
        var json = try JSONSerialization.jsonObject(with: CanonicalJSON.encode(m.state)) as! [String: Any]
        var apply = json["apply"] as! [String: Any]
        var base = apply["baseline"] as! [String: Any]
        base["snapshot"] = nil
        base["files"] = old
        apply["baseline"] = base
        json["apply"] = apply
        let state = try CanonicalJSON.decode(ApplyMachine.State.self, from: JSONSerialization.data(withJSONObject: json))
        m = ApplyMachine(state: state)
        let actions = try m.handle(.rollbackRequested(reason: "r", now: t0))
        #expect(actions.contains(.restoreFiles(restored)))
    }
}
