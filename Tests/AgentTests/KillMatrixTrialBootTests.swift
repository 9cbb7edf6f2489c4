import Foundation
import NK3Agent
import NK3Protocol
import Testing

/// kill -9 of a real `nk3-agent` (GRUB trial boot configured) at the points between the rebuild, the one-shot
/// entry, the reboot and the confirm; a restart over the same state dir and fake root must converge to: the
/// previous generation as the boot default with the new one booted once, or (after the confirm) the new one as
/// the default — never a machine whose default is the unconfirmed generation, nor a confirm that is lost.
@Suite("kill -9 matrix: trial boot", .serialized, .timeLimit(.minutes(10)))
struct KillMatrixTrialBootTests {
    /// The restarted agent, in process, with the backend exactly as the killed binary configured it (its config
    /// file names every path absolutely inside the fake root), so the store paths it persisted compare equal.
    func restart(_ fake: EngineFakeRoot) async throws -> ApplyEngine {
        let key = Data(repeating: 1, count: 32).base64EncodedString()
        let options = fake.agentConfig(signingKey: key, trialBoot: .grub).nixOSOptions()
        let engine = try ApplyEngine(
            system: NixOSSystem(options: options, runner: ProcessRunner(terminationGrace: .seconds(2)), logger: EngineKit.logger),
            stateDir: fake.stateDir, clock: ManualAgentClock(start: Date()), rebootDelay: .zero, logger: EngineKit.logger)
        await engine.start()
        await engine.waitUntilSettled()
        return engine
    }

    func boot(_ files: [String: String]) -> Command {
        .apply(ApplyBundle(files: files, action: .boot, confirmTimeoutSeconds: 600))
    }

    @Test("killed after the rebuild, before the loader was touched: the new generation IS the default then; restart arms the trial")
    func killBeforeArming() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake, trialBoot: .grub)
        let gen1 = fake.systemOf(generation: 1)
        let (_, killed) = try await agent.run(boot(EngineKit.newFiles()), serial: 1, killAt: "persisted:armingTrial")
        #expect(killed)
        #expect(fake.bootDefault == fake.systemOf(generation: 2), "at the kill the unconfirmed generation was the default (the test bites)")
        #expect(fake.grubNextEntry == nil)
        let engine = try await restart(fake)
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
        #expect(fake.bootDefault == gen1)
        #expect(fake.grubNextEntry == "1>0")
    }

    @Test("killed between the default and the one-shot: restart sets the one-shot (the default stays the old one)")
    func killBeforeOneShot() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake, trialBoot: .grub)
        let gen1 = fake.systemOf(generation: 1)
        let (_, killed) = try await agent.run(boot(EngineKit.newFiles()), serial: 1, killAt: "before:setBootOnce")
        #expect(killed)
        #expect(fake.bootDefault == gen1)
        #expect(fake.grubNextEntry == nil, "at the kill no one-shot was set yet")
        let engine = try await restart(fake)
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
        #expect(fake.grubNextEntry == "1>0")
        #expect(fake.bootDefault == gen1)
    }

    @Test("killed after the one-shot, before the reboot: restart keeps the trial; the reboot boots the new generation once; confirm commits")
    func killBeforeReboot() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake, trialBoot: .grub)
        let gen1 = fake.systemOf(generation: 1)
        let (_, killed) = try await agent.run(boot(EngineKit.newFiles()), serial: 1, killAt: "persisted:awaitingConfirm")
        #expect(killed)
        var engine = try await restart(fake)
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
        #expect(fake.grubNextEntry == "1>0")
        await engine.halt()
        try fake.simulateReboot()
        #expect(fake.bootedSystem() == fake.systemOf(generation: 2))
        engine = try await restart(fake)
        #expect(fake.bootDefault == gen1)
        _ = try await engine.handle(EngineKit.payload(.confirm(.init(applySerial: 1)), serial: 2))
        await engine.waitUntilSettled()
        #expect(await engine.status().lastResult?.outcome == .committed)
        #expect(fake.bootDefault == fake.systemOf(generation: 2))
    }

    @Test("killed after the confirm was recorded, before the new generation became the default: restart makes it the default")
    func killWhileCommitting() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake, trialBoot: .grub)
        let gen1 = fake.systemOf(generation: 1)
        let (status, killed0) = try await agent.run(boot(EngineKit.newFiles()), serial: 1)
        #expect(status == 0 && !killed0)
        try fake.simulateReboot()
        let (_, killed) = try await agent.run(.confirm(.init(applySerial: 1)), serial: 2, killAt: "persisted:committing")
        #expect(killed)
        #expect(fake.bootDefault == gen1, "at the kill the old generation was still the default (the test bites)")
        let engine = try await restart(fake)
        let s = await engine.status()
        #expect(s.operation == nil)
        #expect(s.lastResult?.outcome == .committed)
        #expect(fake.bootDefault == fake.systemOf(generation: 2))
    }
}
