import Foundation
import NK3Agent
import NK3Protocol
import Testing

@Suite("Status from the fake root", .serialized, .timeLimit(.minutes(2)))
struct StatusEngineTests {
    @Test("kernel, generations, boot id, uptime, channel, files and kubelet state are read from the machine")
    func statusFromRoot() async throws {
        let fake = try EngineFakeRoot()
        let healthz = try EngineHealthzServer()
        defer { healthz.stop() }
        try fake.setKnob("unit-k3s-active")
        var options = fake.options
        options.kubeletHealthzURL = healthz.url
        let system = NixOSSystem(options: options, logger: EngineKit.logger)
        let engine = try ApplyEngine(
            system: system, stateDir: fake.stateDir, clock: ManualAgentClock(), logger: EngineKit.logger)
        await engine.start()

        let s = await engine.status()
        #expect(s.hostname == "node1")
        #expect(s.kernel == "6.6.1")
        #expect(s.nixosVersion == "24.05.1")
        #expect(s.bootID == fake.bootID)
        #expect(s.uptimeSeconds == 1234.56)
        #expect(s.currentGeneration == 1 && s.bootedGeneration == 1 && s.profileGeneration == 1)
        #expect(s.currentSystem?.hasPrefix("/nix/store/") == true, "root prefix stripped: \(s.currentSystem ?? "nil")")
        #expect(s.profileKernel == "6.6.1")
        #expect(s.channel == EngineFakeRoot.initialChannel)
        #expect(s.files == ConfigFiles.digests(EngineFakeRoot.initialFiles))
        #expect(s.configHash == ConfigFiles.hash(files: EngineFakeRoot.initialFiles))
        #expect(s.kubelet == KubeletState(unit: "k3s", unitActive: true, healthz: true))
        #expect(s.rollbackMode == "dead-man")
        #expect(s.operation == nil && s.lastResult == nil)

        // Everything changes after a boot apply and a reboot.
        let clock = ManualAgentClock()
        let engine2 = try ApplyEngine(system: system, stateDir: fake.stateDir, clock: clock, logger: EngineKit.logger)
        await engine2.start()
        _ = try await engine2.handle(EngineKit.apply(EngineKit.newFiles(kernel: "6.9.0"), .boot, serial: 1))
        await engine2.waitUntilSettled()
        var t = await engine2.status()
        #expect(t.profileGeneration == 2 && t.currentGeneration == 1 && t.bootedGeneration == 1)
        #expect(t.profileKernel == "6.9.0" && t.kernel == "6.6.1")
        #expect(t.operation?.bootIDAtRebuild == fake.bootID)
        await engine2.halt()  // the old process ends with the reboot
        try fake.simulateReboot()
        try fake.setKnob("unit-k3s-active", false)
        let engine3 = try ApplyEngine(system: system, stateDir: fake.stateDir, clock: clock, logger: EngineKit.logger)
        await engine3.start()
        t = await engine3.status()
        #expect(t.kernel == "6.9.0")
        #expect(t.bootID == fake.bootID && t.bootID != s.bootID)
        #expect(t.currentGeneration == 2 && t.bootedGeneration == 2)
        #expect(t.nixosVersion == "24.05.2")
        #expect(t.kubelet.unitActive == false)
        #expect(t.operation?.phase == .awaitingConfirm)
    }

    @Test("kubelet healthz unreachable → nil; a non-ok answer → false")
    func healthzStates() async throws {
        let fake = try EngineFakeRoot()
        var options = fake.options
        options.kubeletHealthzURL = "http://127.0.0.1:1/healthz"
        var k = await NixOSSystem(options: options, logger: EngineKit.logger).kubelet(unit: "k3s")
        #expect(k.healthz == nil && k.unitActive == false)
        let bad = try EngineHealthzServer(body: "[-]ping failed", status: 500)
        defer { bad.stop() }
        options.kubeletHealthzURL = bad.url
        k = await NixOSSystem(options: options, logger: EngineKit.logger).kubelet(unit: "k3s")
        #expect(k.healthz == false)
        // Never off the node.
        options.kubeletHealthzURL = "http://10.0.0.1:10248/healthz"
        k = await NixOSSystem(options: options, logger: EngineKit.logger).kubelet(unit: "k3s")
        #expect(k.healthz == nil)
    }

    @Test("operation report: phase, result and a bounded log tail")
    func operationReport() async throws {
        let fake = try EngineFakeRoot()
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        #expect(await engine.operation(id: "apply-1") == nil)
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(), serial: 1))
        await engine.waitUntilSettled()
        let r = try #require(await engine.operation(id: "apply-1"))
        #expect(r.operation?.phase == .awaitingConfirm)
        #expect(r.logTail.contains("building the system configuration..."))
        #expect(r.logTail.utf8.count <= 40 * 1024)
        #expect(await engine.landedFiles() == EngineKit.newFiles())
    }
}
