import Foundation
import NK3Agent
import NK3Protocol
import Testing

/// ApplyEngine + NixOSSystem (real code, real processes) against a fake root with fake nixos tools.
@Suite("ApplyEngine against a fake NixOS root", .serialized, .timeLimit(.minutes(5)))
struct EngineApplyTests {
    @Test("good switch: staged, rebuilt, AWAITING_CONFIRM, then COMMITTED on a matching confirm")
    func goodSwitchCommits() async throws {
        let fake = try EngineFakeRoot()
        let clock = ManualAgentClock()
        let engine = try EngineKit.engine(fake, clock: clock)
        await engine.start()
        let gen1System = fake.systemOf(generation: 1)
        #expect(fake.profileGeneration == 1)

        let files = EngineKit.newFiles()
        let receipt = try await engine.handle(EngineKit.apply(files, serial: 5))
        #expect(receipt.operationID == "apply-5")
        await engine.waitUntilSettled()

        let s = await engine.status()
        #expect(s.operation?.phase == .awaitingConfirm)
        #expect(s.operation?.previousGeneration == 1)
        #expect(s.operation?.newGeneration == 2)
        #expect(s.operation?.deadline == clock.now().addingTimeInterval(600))
        #expect(fake.configFiles() == files, "whole new set landed, k3s.nix (managed before) removed")
        #expect(fake.profileGeneration == 2)
        #expect(try fake.currentSystem() == fake.systemOf(generation: 2))
        #expect(try fake.currentSystem() != gen1System)
        #expect(s.files == ConfigFiles.digests(files))
        #expect(s.configHash == ConfigFiles.hash(files: files))
        let report = await engine.operation(id: "apply-5")
        #expect(report?.logTail.contains("these 3 derivations will be built") == true)

        // One apply at a time.
        await EngineKit.expectRefusal(engine, EngineKit.apply(EngineKit.newFiles(kernel: "7"), serial: 6), .busy)
        // A confirm for another apply is refused and changes nothing.
        await EngineKit.expectRefusal(engine, EngineKit.payload(.confirm(.init(applySerial: 4)), serial: 7), .invalidState)

        let c = try await engine.handle(EngineKit.payload(.confirm(.init(applySerial: 5)), serial: 8))
        #expect(c.phase == .committed)
        let after = await engine.status()
        #expect(after.operation == nil)
        #expect(after.lastResult?.outcome == .committed)
        #expect(after.lastResult?.derivationsBuilt == 3)
        #expect(after.lastResult?.pathsFetched == 2)

        // The old deadline must not fire any more.
        clock.advance(by: 3600)
        await engine.waitUntilSettled()
        #expect(await engine.status().lastResult?.outcome == .committed)
        #expect(fake.profileGeneration == 2)
        #expect(fake.configFiles() == files)
        let metrics = await engine.metricsText()
        #expect(metrics.contains("nk3_agent_system_generation 2"))
        #expect(metrics.contains("nk3_agent_last_result{outcome=\"committed\"} 1"))
        #expect(metrics.contains("nk3_agent_apply_duration_seconds_count 1"))
    }

    @Test("evaluation error: old files restored byte for byte, the tool's error text in the result")
    func evalErrorReverts() async throws {
        let fake = try EngineFakeRoot()
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        let before = fake.configFiles()
        var files = EngineKit.newFiles()
        files["configuration.nix"]! += "# EVAL_ERROR\n"
        _ = try await engine.handle(EngineKit.apply(files, serial: 1))
        await engine.waitUntilSettled()
        let s = await engine.status()
        #expect(s.operation == nil)
        #expect(s.lastResult?.outcome == .failed)
        #expect(s.lastResult?.message.contains("error: undefined variable 'EVAL_ERROR'") == true, "\(s.lastResult?.message ?? "")")
        #expect(fake.configFiles() == before)
        #expect(fake.profileGeneration == 1)
        // A new apply is accepted afterwards.
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(), serial: 2))
        await engine.waitUntilSettled()
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
    }

    @Test("bogus channel (docs/UPSTREAM.md#channels): --add succeeds, --update fails; list file and channel profile restored")
    func bogusChannelReverts() async throws {
        let fake = try EngineFakeRoot()
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        let filesBefore = fake.configFiles()
        let channelsBefore = try #require(fake.read("root/.nix-channels"))
        let channelGen = fake.channelGeneration
        _ = try await engine.handle(
            EngineKit.apply(
                EngineKit.newFiles(), upgrade: true, channel: "https://nixos.org/channels/nixos-bogus-99.11", serial: 3))
        await engine.waitUntilSettled()
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .failed)
        #expect(s.lastResult?.message.contains("unable to download") == true, "\(s.lastResult?.message ?? "")")
        #expect(fake.calls.contains("nix-channel --add https://nixos.org/channels/nixos-bogus-99.11 nixos"))
        #expect(fake.read("root/.nix-channels") == channelsBefore, "byte for byte")
        #expect(fake.channelGeneration == channelGen)
        #expect(fake.configFiles() == filesBefore)
        #expect(s.channel == EngineFakeRoot.initialChannel)
    }

    @Test("channel updated, then the build fails: nix-channel --rollback to the saved channel generation")
    func movedChannelProfileIsRolledBack() async throws {
        let fake = try EngineFakeRoot()
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        let channelsBefore = try #require(fake.read("root/.nix-channels"))
        #expect(fake.channelGeneration == 1)
        var files = EngineKit.newFiles()
        files["configuration.nix"]! += "# EVAL_ERROR\n"
        _ = try await engine.handle(
            EngineKit.apply(files, upgrade: true, channel: "https://channels.nixos.org/nixos-24.11", serial: 3))
        await engine.waitUntilSettled()
        #expect(await engine.status().lastResult?.outcome == .failed)
        #expect(fake.calls.contains("nix-channel --rollback 1"))
        #expect(fake.channelGeneration == 1)
        #expect(fake.read("root/.nix-channels") == channelsBefore)
    }

    @Test("failed activation after the profile moved (docs/UPSTREAM.md#nixos-rebuild): profile moved back, old generation re-activated")
    func failedActivationMovesProfileBack() async throws {
        for ng in [false, true] {
            let fake = try EngineFakeRoot()
            try fake.setKnob("ng", ng)
            let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
            await engine.start()
            let gen1 = fake.systemOf(generation: 1)
            let before = fake.configFiles()
            let files = EngineKit.newFiles(extra: "\n  # activation-exit: 4")
            _ = try await engine.handle(EngineKit.apply(files, serial: 9))
            await engine.waitUntilSettled()
            let s = await engine.status()
            #expect(s.lastResult?.outcome == .failed)
            #expect(s.lastResult?.message.contains("exit \(ng ? 4 : 1)") == true, "\(s.lastResult?.message ?? "")")
            #expect(s.lastResult?.message.contains("error(s) occurred while switching") == true)
            #expect(fake.calls.contains("--switch-generation 1"))
            #expect(fake.profileGeneration == 1, "profile moved back")
            #expect(try fake.currentSystem() == gen1, "old generation live again")
            #expect(fake.bootDefault == gen1, "old generation is the boot default again")
            #expect(fake.configFiles() == before)
        }
    }

    @Test("unconfirmed switch: the deadline passes (controlled clock) → previous generation activated live")
    func unconfirmedSwitchRollsBack() async throws {
        let fake = try EngineFakeRoot()
        let clock = ManualAgentClock()
        let engine = try EngineKit.engine(fake, clock: clock)
        await engine.start()
        let before = fake.configFiles()
        let gen1 = fake.systemOf(generation: 1)
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(), timeout: 120, serial: 2))
        await engine.waitUntilSettled()
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
        clock.advance(by: 119)
        await engine.waitUntilSettled()
        #expect(await engine.status().operation?.phase == .awaitingConfirm, "not before the deadline")
        clock.advance(by: 1)
        await engine.waitUntilSettled()
        let s = await engine.status()
        #expect(s.operation == nil)
        #expect(s.lastResult?.outcome == .rolledBack)
        #expect(s.lastResult?.message.contains("no confirm before the deadline") == true)
        #expect(fake.profileGeneration == 1)
        #expect(try fake.currentSystem() == gen1)
        #expect(fake.configFiles() == before)
        #expect(fake.rebootCount == 0, "a switch rolls back live, without a reboot")
        #expect(await engine.state.rollbacksTotal == 1)
        #expect(await engine.metricsText().contains("nk3_agent_rollbacks_total 1"))
        // A late confirm is refused.
        await EngineKit.expectRefusal(engine, EngineKit.payload(.confirm(.init(applySerial: 2)), serial: 3), .invalidState)
    }

    @Test("unconfirmed boot: deadline re-armed after the reboot; on expiry old default + reboot requested")
    func unconfirmedBootRollsBackAcrossReboot() async throws {
        let fake = try EngineFakeRoot()
        let clock = ManualAgentClock()
        var engine = try EngineKit.engine(fake, clock: clock)
        await engine.start()
        let gen1 = fake.systemOf(generation: 1)
        let oldKernel = try #require(fake.read("proc/sys/kernel/osrelease"))
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(kernel: "6.6.9"), .boot, timeout: 600, serial: 4))
        await engine.waitUntilSettled()
        var s = await engine.status()
        #expect(s.operation?.phase == .awaitingConfirm)
        #expect(fake.profileGeneration == 2)
        #expect(fake.bootDefault == fake.systemOf(generation: 2), "boot: new generation is the boot default")
        #expect(try fake.currentSystem() == gen1, "boot: not live yet")
        #expect(s.profileKernel == "6.6.9")
        let firstBoot = fake.bootID

        // The coordinator drains and reboots the node 500 s later; the agent comes back with a new boot id.
        clock.advance(by: 500)
        _ = try await engine.handle(EngineKit.payload(.reboot(.init(reason: "apply kernel")), serial: 5))
        #expect(await EngineKit.eventually("reboot requested") { fake.rebootCount == 1 })
        await engine.halt()  // the old process dies with the reboot: its deadline (t+600 of the first boot) with it
        try fake.simulateReboot()
        #expect(fake.bootID != firstBoot)
        engine = try EngineKit.engine(fake, clock: clock)
        await engine.start()
        s = await engine.status()
        #expect(s.kernel == "6.6.9")
        #expect(s.bootedGeneration == 2)
        #expect(s.operation?.phase == .awaitingConfirm)
        #expect(s.operation?.deadline == clock.now().addingTimeInterval(600), "re-armed from the new boot")

        clock.advance(by: 599)
        await engine.waitUntilSettled()
        #expect(await engine.status().operation?.phase == .awaitingConfirm, "the old deadline (t+600) did not fire")
        clock.advance(by: 1)
        await engine.waitUntilSettled()
        s = await engine.status()
        #expect(s.lastResult?.outcome == .rolledBack)
        #expect(fake.profileGeneration == 1)
        #expect(fake.bootDefault == gen1, "previous generation is the boot default again")
        #expect(fake.calls.contains("switch-to-configuration boot \(gen1)"))
        #expect(fake.rebootCount == 2, "a reboot into the old generation was requested")

        // Back up on the old generation: nothing left to do, no reboot loop.
        await engine.halt()
        try fake.simulateReboot()
        engine = try EngineKit.engine(fake, clock: clock)
        await engine.start()
        s = await engine.status()
        #expect(s.bootedGeneration == 1)
        #expect(s.kernel + "\n" == oldKernel)
        #expect(fake.rebootCount == 2)
        #expect(await engine.state.pendingReboot == nil)
    }

    @Test("RollbackCommand rolls back at once; rollback with nothing in flight is refused")
    func rollbackCommand() async throws {
        let fake = try EngineFakeRoot()
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        await EngineKit.expectRefusal(engine, EngineKit.payload(.rollback(.init(reason: "x")), serial: 1), .invalidState)
        let before = fake.configFiles()
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(), serial: 2))
        await engine.waitUntilSettled()
        let r = try await engine.handle(EngineKit.payload(.rollback(.init(reason: "gate failed")), serial: 3))
        #expect(r.phase == .rollingBack)
        await engine.waitUntilSettled()
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .rolledBack)
        #expect(s.lastResult?.message.contains("gate failed") == true)
        #expect(fake.profileGeneration == 1)
        #expect(fake.configFiles() == before)
    }

    @Test("same system and nothing built → UNCHANGED (no confirm needed); with --upgrade: no upgrade needed")
    func unchanged() async throws {
        let fake = try EngineFakeRoot()
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        let same = fake.configFiles()
        _ = try await engine.handle(EngineKit.apply(same, serial: 1))
        await engine.waitUntilSettled()
        var s = await engine.status()
        #expect(s.operation == nil)
        #expect(s.lastResult?.outcome == .unchanged)
        #expect(s.lastResult?.message.hasPrefix("no change") == true)
        _ = try await engine.handle(EngineKit.apply(same, upgrade: true, serial: 2))
        await engine.waitUntilSettled()
        s = await engine.status()
        #expect(s.lastResult?.outcome == .unchanged)
        #expect(s.lastResult?.message.hasPrefix("no upgrade needed") == true)
        #expect(fake.profileGeneration == 1)
        // A confirm for an unchanged apply is harmless.
        _ = try await engine.handle(EngineKit.payload(.confirm(.init(applySerial: 2)), serial: 3))
    }

    @Test("switch whose activation exits 100 under -ng: kept, but undone by boot default + reboot")
    func switchNeedingReboot() async throws {
        let fake = try EngineFakeRoot()
        try fake.setKnob("ng")
        let clock = ManualAgentClock()
        let engine = try EngineKit.engine(fake, clock: clock)
        await engine.start()
        let gen1 = fake.systemOf(generation: 1)
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(extra: "\n  # activation-exit: 100"), timeout: 60, serial: 1))
        await engine.waitUntilSettled()
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
        clock.advance(by: 60)
        await engine.waitUntilSettled()
        #expect(await engine.status().lastResult?.outcome == .rolledBack)
        #expect(fake.bootDefault == gen1)
        #expect(fake.rebootCount == 1)
    }
}
