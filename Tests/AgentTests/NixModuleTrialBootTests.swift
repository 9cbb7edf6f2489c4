import Foundation
import NK3Agent
import NK3Protocol
import Testing

/// The module's trial-boot and watchdog options under nixpkgs' real module system (the stand-ins of
/// nix/tests/stand-ins.nix declare `boot.loader.grub.default`, `boot.loader.systemd-boot.enable` and
/// `systemd.watchdog.runtimeTime` as nixpkgs does). The agent reads the loader from config.json with its own
/// strict reader.
@Suite("NixOS module: trial boot", .enabled(if: NixEval.enabled, "nix-instantiate or ../shared/nixpkgs-lib missing"))
struct NixModuleTrialBootTests {
    typealias M = NixModuleEvalTests

    static func agentConfig(_ node: EvaluatedNode) throws -> AgentConfig {
        try AgentConfig.parse(Data(try #require(node.configJSON).utf8), path: "config.json (evaluated)")
    }

    @Test("GRUB installed: trial boot by default — grub.default becomes \"saved\", the agent gets trialBoot = grub")
    func grubDefaultsToTrialBoot() throws {
        let dir = try M.node(M.inventory(node: M.defaultNode))
        defer { dir.remove() }
        let node = try M.evaluated(dir)
        #expect(node.failedAssertions == [])
        #expect(node.grubDefault == "saved")
        let config = try Self.agentConfig(node)
        #expect(config.trialBoot == "grub")
        #expect(config.nixOSOptions().trialBoot == .grub)
        #expect(node.watchdogRuntime == nil)
    }

    @Test("trialBoot = false: GRUB's default stays \"0\" and the agent runs dead-man rollbacks only")
    func trialBootOff() throws {
        let dir = try M.node(M.inventory(node: M.defaultNode))
        defer { dir.remove() }
        let node = try M.evaluated(dir, extraModules: ["off.nix": "{ ... }: { services.nk3-agent.trialBoot = false; }\n"])
        #expect(node.grubDefault == "0")
        #expect(try Self.agentConfig(node).trialBoot == "off")
        #expect(try Self.agentConfig(node).nixOSOptions().trialBoot == nil)
    }

    @Test("GRUB with devices = [ \"nodev\" ] (no GRUB package, no grub-reboot): no trial boot, default untouched")
    func grubNodevHasNoTrialBoot() throws {
        let dir = try M.node(M.inventory(node: "boot_device: nodev\nstate_version: \"24.05\""))
        defer { dir.remove() }
        let node = try M.evaluated(dir)
        #expect(node.grubDefault == "0")
        #expect(try Self.agentConfig(node).trialBoot == "off")
    }

    @Test("systemd-boot: trialBoot = systemd-boot (bootctl set-oneshot), GRUB's default untouched")
    func systemdBoot() throws {
        let template = """
            { ... }:
            {
              imports = [ ./hardware-configuration.nix ./nk3-agent.nix ];
              boot.loader.systemd-boot.enable = true;
              system.stateVersion = "25.05";
            }

            """
        let dir = try M.node(M.inventory(node: "role: server"), template: template)
        defer { dir.remove() }
        let node = try M.evaluated(dir)
        #expect(node.failedAssertions == [])
        #expect(node.grubDefault == "0")
        #expect(try Self.agentConfig(node).trialBoot == "systemd-boot")
        #expect(try Self.agentConfig(node).nixOSOptions().trialBoot == .systemdBoot)
    }

    @Test("watchdog = \"30s\" sets systemd.watchdog.runtimeTime; a non-string is refused by the type")
    func watchdog() throws {
        let dir = try M.node(M.inventory(node: M.defaultNode))
        defer { dir.remove() }
        let node = try M.evaluated(dir, extraModules: ["wd.nix": "{ ... }: { services.nk3-agent.watchdog = \"30s\"; }\n"])
        #expect(node.watchdogRuntime == "30s")
        try M.evaluationFails(
            dir, extraModules: ["wd.nix": "{ ... }: { services.nk3-agent.watchdog = 30; }\n"],
            expected: ["services.nk3-agent.watchdog", "is not of type"])
    }

    @Test("the agent's reader refuses an unknown trialBoot value")
    func unknownLoaderRefused() throws {
        let dir = try M.node(M.inventory(node: M.defaultNode))
        defer { dir.remove() }
        let node = try M.evaluated(dir, extraModules: ["x.nix": "{ ... }: { services.nk3-agent.settings.trialBoot = \"lilo\"; }\n"])
        #expect(throws: AgentConfigError.self) { try Self.agentConfig(node) }
    }
}
