import Foundation
import NK3Agent
import NK3Protocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Flake mode on the real backend (NixOSSystem, real processes) against a fake root: the exact commands run,
/// the lock an upgrade writes reported in status, and a rollback putting the old lock back.
@Suite("ApplyEngine in flake mode against a fake NixOS root", .serialized, .timeLimit(.minutes(5)))
struct FlakeApplyTests {
    static let revA = String(repeating: "a", count: 40)
    static let revB = String(repeating: "b", count: 40)
    static func lock(_ rev: String) -> String {
        #"{"nodes":{"nixpkgs":{"locked":{"owner":"NixOS","repo":"nixpkgs","rev":""# + rev
            + #"","type":"github"}},"root":{"inputs":{"nixpkgs":"nixpkgs"}}},"root":"root","version":7}"# + "\n"
    }

    /// The fake root, with `nixos-rebuild` and `nix` wrapped to record their arguments (and `nix` to write
    /// `lock(revB)` as `nix flake lock --update-input nixpkgs` would, or fail when control/nix-fails exists).
    static func setUp() throws -> (EngineFakeRoot, NixOSSystem) {
        let fake = try EngineFakeRoot()
        let r = fake.root
        try fake.write("bin/nixos-rebuild-recorded", """
            #!/bin/bash
            echo "nixos-rebuild $*" >> '\(r)/control/args.log'
            exec '\(r)/bin/nixos-rebuild' "$1"

            """)
        try fake.write("bin/nix", """
            #!/bin/bash
            echo "nix $*" >> '\(r)/control/args.log'
            if [ -e '\(r)/control/nix-fails' ]; then echo "error: unable to download 'https://github.com/NixOS/nixpkgs'" >&2; exit 1; fi
            printf '%s' '\(lock(revB))' > '\(r)/etc/nixos/flake.lock'

            """)
        chmod("\(r)/bin/nixos-rebuild-recorded", 0o755)
        chmod("\(r)/bin/nix", 0o755)
        var o = fake.options
        o.nixosRebuild = "\(r)/bin/nixos-rebuild-recorded"
        o.nix = "\(r)/bin/nix"
        return (fake, NixOSSystem(options: o, runner: ProcessRunner(terminationGrace: .seconds(2)), logger: EngineKit.logger))
    }

    static func files(_ rev: String) -> [String: String] {
        var f = EngineKit.newFiles()
        f["flake.nix"] = "{ outputs = { self, nixpkgs }: { nixosConfigurations.\"node1\" = { }; }; }\n"
        f["flake.lock"] = lock(rev)
        return f
    }

    static func apply(_ files: [String: String], upgrade: Bool, serial: UInt64) -> CommandPayload {
        EngineKit.payload(.apply(ApplyBundle(files: files, action: .switch, upgrade: upgrade, flake: "node1")), serial: serial)
    }

    @Test("apply builds path:/etc/nixos#node1 with --no-write-lock-file; upgrade locks nixpkgs first and reports the new lock; rollback restores the old lock")
    func applyUpgradeRollback() async throws {
        let (fake, system) = try Self.setUp()
        let clock = ManualAgentClock()
        let engine = try ApplyEngine(system: system, stateDir: fake.stateDir, clock: clock, rebootDelay: .zero, logger: EngineKit.logger)
        await engine.start()
        let dir = "\(fake.root)/etc/nixos"

        _ = try await engine.handle(Self.apply(Self.files(Self.revA), upgrade: false, serial: 1))
        await engine.waitUntilSettled()
        var s = await engine.status()
        #expect(s.operation?.phase == .awaitingConfirm, "\(String(describing: s.lastResult))")
        #expect(s.flakeLock?.nixpkgsRevision == Self.revA)
        #expect(fake.read("control/args.log") == "nixos-rebuild switch --flake path:\(dir)#node1 --no-write-lock-file --impure\n")
        _ = try await engine.handle(EngineKit.payload(.confirm(.init(applySerial: 1)), serial: 2))

        try fake.write("control/args.log", "")
        _ = try await engine.handle(Self.apply(Self.files(Self.revA), upgrade: true, serial: 3))
        await engine.waitUntilSettled()
        s = await engine.status()
        #expect(s.operation?.phase == .awaitingConfirm, "\(String(describing: s.lastResult))")
        #expect(fake.read("control/args.log") == """
            nix --extra-experimental-features nix-command flakes flake lock --update-input nixpkgs path:\(dir)
            nixos-rebuild switch --flake path:\(dir)#node1 --no-write-lock-file --impure

            """)
        #expect(s.flakeLock?.nixpkgsRevision == Self.revB)
        #expect(s.flakeLock?.content == Self.lock(Self.revB))

        _ = try await engine.handle(EngineKit.payload(.rollback(.init(reason: "test")), serial: 4))
        await engine.waitUntilSettled()
        s = await engine.status()
        #expect(s.lastResult?.outcome == .rolledBack)
        #expect(fake.read("etc/nixos/flake.lock") == Self.lock(Self.revA), "the saved lock is back")
        #expect(s.flakeLock?.nixpkgsRevision == Self.revA)
    }

    @Test("the lock update fails: nixos-rebuild never runs, the apply fails and the files are restored")
    func lockUpdateFailure() async throws {
        let (fake, system) = try Self.setUp()
        let engine = try ApplyEngine(system: system, stateDir: fake.stateDir, clock: ManualAgentClock(), rebootDelay: .zero, logger: EngineKit.logger)
        await engine.start()
        let before = fake.configFiles()
        try fake.setKnob("nix-fails")
        _ = try await engine.handle(Self.apply(Self.files(Self.revA), upgrade: true, serial: 1))
        await engine.waitUntilSettled()
        let s = await engine.status()
        #expect(s.lastResult?.outcome == .failed)
        #expect(s.lastResult?.message.contains("unable to download") == true, "\(String(describing: s.lastResult))")
        #expect(fake.read("control/args.log")?.contains("nixos-rebuild") == false)
        #expect(fake.configFiles() == before)
        #expect(fake.profileGeneration == 1)
    }
}
