import Foundation
import NK3Agent
import NK3Protocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// kill -9 of a real `nk3-agent` process at each apply phase, then a restart over the same state dir and fake
/// root: /etc/nixos is always the whole old or the whole new set (never a mix) and the engine converges.
///
/// The kill is a real SIGKILL: either the agent's kill point (`NK3_AGENT_TEST_KILL_AT`, compiled into debug
/// builds only: Sources/Agent/Engine/TestKillPoints.swift) kills itself at an exact point, or the test kills it
/// while the fake nixos-rebuild hangs.
@Suite("kill -9 matrix", .serialized, .timeLimit(.minutes(10)))
struct KillMatrixTests {
    /// Old set, new set, and the restart's verdict on the config dir.
    enum Side: Equatable { case old, new }

    func side(_ fake: EngineFakeRoot, old: [String: String], new: [String: String]) -> Side? {
        let now = fake.configFiles()
        if now == old { return .old }
        if now == new { return .new }
        return nil
    }

    func restart(_ fake: EngineFakeRoot) async throws -> ApplyEngine {
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock(start: Date()))
        await engine.start()
        return engine
    }

    func applyCommand(_ files: [String: String], _ action: RebuildAction = .switch) -> Command {
        .apply(ApplyBundle(files: files, action: action, confirmTimeoutSeconds: 600))
    }

    @Test("killed right after the apply was recorded (received): nothing changed, FAILED on restart")
    func killReceived() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake)
        let old = fake.configFiles()
        let new = EngineKit.newFiles()
        let (_, killed) = try await agent.run(applyCommand(new), serial: 1, killAt: "persisted:received")
        #expect(killed, "the agent died of SIGKILL")
        #expect(side(fake, old: old, new: new) == .old)
        let engine = try await restart(fake)
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .failed)
        #expect(s.operation == nil)
        #expect(side(fake, old: old, new: new) == .old)
        #expect(fake.profileGeneration == 1)
    }

    @Test("killed while staging (after the first new file landed): restart restores the whole old set")
    func killStaging() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake)
        let old = fake.configFiles()
        let new = EngineKit.newFiles()
        let (_, killed) = try await agent.run(applyCommand(new), serial: 1, killAt: "file-replaced")
        #expect(killed)
        #expect(side(fake, old: old, new: new) == nil, "at the kill the directory really was a mix (the test bites)")
        let engine = try await restart(fake)
        #expect(side(fake, old: old, new: new) == .old)
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .failed)
        #expect(s.lastResult?.message.contains("interrupted by an agent restart while staging") == true)
        #expect(fake.profileGeneration == 1)
        #expect(!fake.calls.contains("nixos-rebuild"), "no rebuild ran")
    }

    @Test("killed during nixos-rebuild (profile already moved, activation hanging): restart reverts profile and files")
    func killDuringRebuild() async throws {
        let fake = try EngineFakeRoot()
        try fake.setKnob("hang-activation")
        let agent = try EngineKit.AgentProcess(fake: fake)
        let old = fake.configFiles()
        let gen1 = fake.systemOf(generation: 1)
        let new = EngineKit.newFiles()
        let process = try agent.start(applyCommand(new), serial: 1)
        #expect(await EngineKit.eventually("the rebuild to set the profile") { fake.profileGeneration == 2 })
        kill(process.processIdentifier, SIGKILL)
        fake.killOrphanedRebuild()  // systemd stops the unit's cgroup when its main process dies
        await EngineKit.waitForExit(process)
        #expect(!process.isRunning)
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)
        try fake.setKnob("hang-activation", false)
        #expect(side(fake, old: old, new: new) == .new)

        let engine = try await restart(fake)
        #expect(side(fake, old: old, new: new) == .old)
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .failed)
        #expect(s.lastResult?.message.contains("while nixos-rebuild ran") == true)
        #expect(fake.profileGeneration == 1, "profile moved back (it is set before activation)")
        #expect(try fake.currentSystem() == gen1)
        #expect(fake.bootDefault == gen1)
    }

    @Test("killed once AWAITING_CONFIRM was recorded: restart keeps the new set and deadline; confirm commits")
    func killAwaitingConfirm() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake)
        let old = fake.configFiles()
        let new = EngineKit.newFiles()
        let (_, killed) = try await agent.run(applyCommand(new), serial: 1, killAt: "persisted:awaitingConfirm")
        #expect(killed)
        #expect(side(fake, old: old, new: new) == .new)
        let engine = try await restart(fake)
        #expect(side(fake, old: old, new: new) == .new)
        let s = await engine.status()
        #expect(s.operation?.phase == .awaitingConfirm)
        #expect(s.operation?.deadline != nil)
        #expect(fake.profileGeneration == 2)
        _ = try await engine.handle(EngineKit.payload(.confirm(.init(applySerial: 1)), serial: 2))
        #expect(await engine.status().lastResult?.outcome == .committed)
    }

    @Test("killed during rollback (first old file restored): restart finishes the rollback")
    func killDuringRollback() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake)
        let old = fake.configFiles()
        let gen1 = fake.systemOf(generation: 1)
        let new = EngineKit.newFiles()
        let (status, killed0) = try await agent.run(applyCommand(new), serial: 1)
        #expect(status == 0 && !killed0)
        #expect(side(fake, old: old, new: new) == .new)
        #expect(fake.profileGeneration == 2)

        let (_, killed) = try await agent.run(.rollback(.init(reason: "gate failed")), serial: 2, killAt: "file-replaced")
        #expect(killed)
        #expect(side(fake, old: old, new: new) == nil, "at the kill the directory really was a mix")
        let engine = try await restart(fake)
        #expect(side(fake, old: old, new: new) == .old)
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .rolledBack)
        #expect(fake.profileGeneration == 1)
        #expect(try fake.currentSystem() == gen1)
    }

    @Test("killed during rollback after the files, before the activation: restart activates the old generation")
    func killBeforeRollbackActivation() async throws {
        let fake = try EngineFakeRoot()
        let agent = try EngineKit.AgentProcess(fake: fake)
        let old = fake.configFiles()
        let gen1 = fake.systemOf(generation: 1)
        let new = EngineKit.newFiles()
        _ = try await agent.run(applyCommand(new), serial: 1)
        let (_, killed) = try await agent.run(.rollback(.init(reason: "x")), serial: 2, killAt: "before:activatePrevious")
        #expect(killed)
        #expect(side(fake, old: old, new: new) == .old)
        #expect(fake.profileGeneration == 2, "the kill came before the activation")
        let engine = try await restart(fake)
        #expect(await engine.status().lastResult?.outcome == .rolledBack)
        #expect(fake.profileGeneration == 1)
        #expect(try fake.currentSystem() == gen1)
        #expect(side(fake, old: old, new: new) == .old)
    }

    // MARK: a node as bootstrap leaves it (files nk3 never managed)

    /// A first bundle after bootstrap: replaces the symlinked configuration.nix with a file, changes
    /// nk3-agent.nix, overwrites the machine's own hardware-configuration.nix, and adds cluster.nix.
    static func firstBundle(eval: Bool = true) -> [String: String] {
        [
            "configuration.nix": "{ ... }: {\n  # kernel: 6.6.9\n  imports = [ ./cluster.nix ./nk3-agent.nix ];\n"
                + (eval ? "" : "  # EVAL_ERROR\n") + "}\n",
            "nk3-agent.nix": "{ imports = [ ./nk3-agent-module.nix ]; services.nk3-agent.enable = true; services.nk3-agent.port = 7443; }\n",
            "nk3-agent-module.nix": "{ config, lib, pkgs, ... }: { }\n",
            "hardware-configuration.nix": "# the coordinator's copy\n{ }\n",
            "cluster.nix": "{ ... }: { services.k3s.enable = true; }\n",
        ]
    }

    @Test(
        "fresh node (no record, unmanaged files, a symlink): killed mid-staging, restart restores every entry exactly",
        arguments: [false, true])
    func killStagingAfterBootstrap(record: Bool) async throws {
        let fake = try EngineFakeRoot.bootstrapped(record: record)
        let agent = try EngineKit.AgentProcess(fake: fake)
        let before = fake.configEntries()
        #expect(before["configuration.nix"] == .link("hosts/node1.nix"))
        #expect(before["hardware-configuration.nix"] == .file(EngineFakeRoot.hardwareConfig, mode: 0o600))
        let (_, killed) = try await agent.run(applyCommand(Self.firstBundle()), serial: 1, killAt: "file-replaced")
        #expect(killed)
        #expect(fake.configEntries() != before, "at the kill the directory really had changed")
        let engine = try await restart(fake)
        #expect(fake.configEntries() == before, "every entry back: bytes, modes, the link")
        #expect(await engine.status().lastResult?.outcome == .failed)
        #expect(!fake.calls.contains("nixos-rebuild"))
    }

    @Test("fresh node: killed after the saved files were persisted, before staging: restart changes nothing back")
    func killAfterSnapshotPersisted() async throws {
        let fake = try EngineFakeRoot.bootstrapped(record: true)
        let agent = try EngineKit.AgentProcess(fake: fake)
        let before = fake.configEntries()
        let (_, killed) = try await agent.run(applyCommand(Self.firstBundle()), serial: 1, killAt: "persisted:staging")
        #expect(killed)
        #expect(fake.configEntries() == before)
        _ = try await restart(fake)
        #expect(fake.configEntries() == before)
        #expect(fake.read("var/lib/nk3-agent/managed-files.json").map { $0.contains("nk3-agent.nix") } == true)
    }

    @Test("fresh node: a failed first apply (evaluation error) restores every entry exactly; nothing is deleted")
    func failedFirstApplyAfterBootstrap() async throws {
        let fake = try EngineFakeRoot.bootstrapped(record: false)
        let agent = try EngineKit.AgentProcess(fake: fake)
        let before = fake.configEntries()
        let (status, killed) = try await agent.run(applyCommand(Self.firstBundle(eval: false)), serial: 1)
        #expect(status == 0 && !killed)
        #expect(fake.configEntries() == before)
        let engine = try await restart(fake)
        #expect(await engine.status().lastResult?.outcome == .failed)
        #expect(!SecureFilesTestAccess.exists(fake.stateDir + "/managed-files.json"), "no record before, none after")
    }

    @Test("fresh node: rollback killed mid-restore; restart finishes it with every entry exact")
    func killDuringRollbackAfterBootstrap() async throws {
        let fake = try EngineFakeRoot.bootstrapped(record: true)
        let agent = try EngineKit.AgentProcess(fake: fake)
        let before = fake.configEntries()
        let recordBefore = fake.read("var/lib/nk3-agent/managed-files.json")
        let (status, killed0) = try await agent.run(applyCommand(Self.firstBundle()), serial: 1)
        #expect(status == 0 && !killed0)
        #expect(fake.profileGeneration == 2)
        #expect(fake.configEntries()["configuration.nix"] != before["configuration.nix"])
        let (_, killed) = try await agent.run(.rollback(.init(reason: "gate failed")), serial: 2, killAt: "file-replaced")
        #expect(killed)
        #expect(fake.configEntries() != before, "at the kill the restore was half-way")
        let engine = try await restart(fake)
        #expect(fake.configEntries() == before)
        #expect(fake.read("var/lib/nk3-agent/managed-files.json") == recordBefore)
        #expect(await engine.status().lastResult?.outcome == .rolledBack)
        #expect(fake.profileGeneration == 1)
    }
}

enum SecureFilesTestAccess {
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
