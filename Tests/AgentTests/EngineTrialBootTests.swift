import Foundation
import NK3Agent
import NK3Protocol
import Testing

/// Trial boot (docs/RELIABILITY.md#trial-boot): ApplyEngine + NixOSSystem (real code, real processes) against
/// the fake root, whose fake `grub-reboot`, `grub-editenv` and `bootctl` record their argv and whose simulated
/// reboot boots a one-shot entry once.
@Suite("Trial boot against a fake NixOS root", .serialized, .timeLimit(.minutes(5)))
struct EngineTrialBootTests {
    static func engine(_ fake: EngineFakeRoot, _ clock: ManualAgentClock, _ loader: TrialBootLoader?) throws -> ApplyEngine {
        try ApplyEngine(
            system: fake.system(trialBoot: loader), stateDir: fake.stateDir, clock: clock, rebootDelay: .zero,
            logger: EngineKit.logger)
    }

    @Test("NixOSSystem, GRUB: setBootDefault runs that generation's switch-to-configuration boot and leaves the profile; grub-reboot 1>K; grub-editenv unset")
    func grubCommands() async throws {
        let fake = try EngineFakeRoot()
        let system = fake.system(trialBoot: .grub)
        #expect(await system.trialBootLoader() == .grub)
        // A second generation, made the default by `nixos-rebuild boot`.
        try fake.write("etc/nixos/configuration.nix", EngineKit.newFiles(kernel: "6.6.9")["configuration.nix"]!)
        try fake.write("etc/nixos/cluster.nix", EngineKit.newFiles()["cluster.nix"]!)
        let r = try await system.rebuild(.boot, upgrade: false) { _ in }
        #expect(r.exitCode == 0)
        #expect(fake.profileGeneration == 2)
        let gen1 = fake.systemOf(generation: 1)
        let gen2 = fake.systemOf(generation: 2)
        #expect(fake.bootDefault == gen2)
        try fake.sh(": > '\(fake.root)/control/calls.log'")

        try await system.setBootDefault(generation: 1)
        #expect(fake.bootDefault == gen1)
        #expect(fake.profileGeneration == 2, "the profile stays: generation 2 keeps its menu entry")
        #expect(fake.calls.contains("switch-to-configuration boot \(gen1)"))
        #expect(!fake.calls.contains("nix-env -p"), "no --switch-generation")

        try await system.setBootOnce(generation: 2)
        #expect(fake.calls.contains("grub-reboot 1: 1\\>0"), "\(fake.calls)")
        #expect(fake.grubNextEntry == "1>0")
        try await system.setBootOnce(generation: 1)
        #expect(fake.grubNextEntry == "1>1", "generation 1 is the second newest")
        try await system.setBootOnce(generation: nil)
        #expect(fake.calls.contains("grub-editenv 3: \(fake.root)/boot/grub/grubenv unset next_entry"), "\(fake.calls)")
        #expect(fake.grubNextEntry == nil)
        await #expect(throws: NodeSystemError.self) { try await system.setBootOnce(generation: 9) }
        await #expect(throws: NodeSystemError.self) { try await system.setBootDefault(generation: 9) }
    }

    @Test("NixOSSystem, systemd-boot: bootctl set-oneshot nixos-generation-N.conf, and an empty ID to clear; no loader: refused")
    func systemdBootCommands() async throws {
        let fake = try EngineFakeRoot()
        let system = fake.system(trialBoot: .systemdBoot)
        try await system.setBootOnce(generation: 1)
        #expect(fake.calls.contains("bootctl 2: set-oneshot nixos-generation-1.conf"), "\(fake.calls)")
        #expect(fake.systemdOneShot == "nixos-generation-1.conf")
        try await system.setBootOnce(generation: nil)
        #expect(fake.calls.contains("bootctl 2: set-oneshot ''"), "\(fake.calls)")
        #expect(fake.systemdOneShot == nil)

        let none = fake.system(trialBoot: nil)
        #expect(await none.trialBootLoader() == nil)
        await #expect(throws: NodeSystemError.self) { try await none.setBootOnce(generation: 1) }
    }

    @Test("good trial boot (GRUB): old default kept, new booted once, and made the default only by the confirm")
    func goodTrialCommits() async throws {
        let fake = try EngineFakeRoot()
        let clock = ManualAgentClock()
        var engine = try Self.engine(fake, clock, .grub)
        await engine.start()
        #expect(await engine.status().rollbackMode == "trial-boot")
        let gen1 = fake.systemOf(generation: 1)
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(kernel: "6.6.9"), .boot, serial: 4))
        await engine.waitUntilSettled()
        var s = await engine.status()
        #expect(s.operation?.phase == .awaitingConfirm)
        #expect(s.operation?.newGeneration == 2)
        let gen2 = fake.systemOf(generation: 2)
        #expect(fake.profileGeneration == 2)
        #expect(fake.bootDefault == gen1, "the previous generation stays the boot default")
        #expect(fake.grubNextEntry == "1>0", "the new generation boots once")
        #expect(s.operation?.deadline == clock.now().addingTimeInterval(600))

        _ = try await engine.handle(EngineKit.payload(.reboot(.init(reason: "apply kernel")), serial: 5))
        #expect(await EngineKit.eventually("reboot requested") { fake.rebootCount == 1 })
        await engine.halt()
        try fake.simulateReboot()
        #expect(fake.bootedSystem() == gen2)
        #expect(fake.grubNextEntry == nil, "GRUB consumed the one-shot")
        engine = try Self.engine(fake, clock, .grub)
        await engine.start()
        s = await engine.status()
        #expect(s.bootedGeneration == 2)
        #expect(s.operation?.phase == .awaitingConfirm)
        #expect(fake.bootDefault == gen1, "still on trial: a reset now would boot generation 1")

        let c = try await engine.handle(EngineKit.payload(.confirm(.init(applySerial: 4)), serial: 6))
        #expect(c.phase == .committed)
        await engine.waitUntilSettled()
        s = await engine.status()
        #expect(s.operation == nil)
        #expect(s.lastResult?.outcome == .committed)
        #expect(s.lastResult?.message.contains("boot default") == true)
        #expect(fake.bootDefault == gen2, "confirmed: the new generation is the boot default")
        #expect(fake.rebootCount == 1)
    }

    @Test("kernel that never boots (GRUB): the one-shot is spent, a reset boots generation 1; the agent reports rolled_back without rebooting")
    func failedTrialRollsBack() async throws {
        let fake = try EngineFakeRoot()
        let clock = ManualAgentClock()
        var engine = try Self.engine(fake, clock, .grub)
        await engine.start()
        let before = fake.configFiles()
        let gen1 = fake.systemOf(generation: 1)
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(kernel: "6.6.9"), .boot, serial: 4))
        await engine.waitUntilSettled()
        _ = try await engine.handle(EngineKit.payload(.reboot(.init(reason: "apply kernel")), serial: 5))
        #expect(await EngineKit.eventually("reboot requested") { fake.rebootCount == 1 })
        await engine.halt()
        try fake.simulateReboot(oneShotBoots: false)
        #expect(fake.bootedSystem() == gen1)
        engine = try Self.engine(fake, clock, .grub)
        await engine.start()
        await engine.waitUntilSettled()
        let s = await engine.status()
        #expect(s.operation == nil)
        #expect(s.lastResult?.outcome == .rolledBack)
        #expect(s.lastResult?.message.contains("trial boot failed") == true, "\(s.lastResult?.message ?? "")")
        #expect(fake.profileGeneration == 1, "the profile is back on generation 1")
        #expect(fake.bootDefault == gen1)
        #expect(fake.configFiles() == before, "files restored")
        #expect(fake.rebootCount == 1, "no second reboot: generation 1 already runs")
        #expect(await engine.state.pendingReboot == nil)
    }

    @Test("deadline passes before the reboot (systemd-boot): the pending one-shot is cleared, no reboot needed")
    func deadlineBeforeRebootClearsOneShot() async throws {
        let fake = try EngineFakeRoot()
        let clock = ManualAgentClock()
        let engine = try Self.engine(fake, clock, .systemdBoot)
        await engine.start()
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(kernel: "6.6.9"), .boot, timeout: 60, serial: 4))
        await engine.waitUntilSettled()
        #expect(fake.systemdOneShot == "nixos-generation-2.conf")
        clock.advance(by: 60)
        await engine.waitUntilSettled()
        #expect(await engine.status().lastResult?.outcome == .rolledBack)
        #expect(fake.systemdOneShot == nil, "a one-shot left set would boot the rolled-back generation")
        #expect(fake.profileGeneration == 1)
        #expect(fake.rebootCount == 0)
    }

    @Test("no trial-boot loader: a boot apply is dead-man as before (new generation is the boot default), status says so")
    func deadManWithoutLoader() async throws {
        let fake = try EngineFakeRoot()
        let engine = try Self.engine(fake, ManualAgentClock(), nil)
        await engine.start()
        #expect(await engine.status().rollbackMode == "dead-man")
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(kernel: "6.6.9"), .boot, serial: 4))
        await engine.waitUntilSettled()
        #expect(fake.bootDefault == fake.systemOf(generation: 2))
        #expect(!fake.calls.contains("grub-reboot") && !fake.calls.contains("bootctl"))
    }
}
