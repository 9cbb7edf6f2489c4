import Foundation
import Logging
import NK3Agent
import NK3Protocol
import NK3Simulation
import Synchronization
import Testing

/// The simulated NixOS node passes the behaviours the NixOS backend is tested for against its fake root
/// (docs/UPSTREAM.md#nixos-rebuild, #generations, #channels): generation semantics of switch/boot/test,
/// "nothing to build", rebuild failure, channel update and restore, activate, and reboot into the profile
/// generation with a new boot id.
@Suite("SimulatedNode (simulation)", .timeLimit(.minutes(1)))
struct SimulatedNodeTests {
    static let quiet = Logger(label: "sim-test", factory: { _ in SwiftLogNoOpLogHandler() })
    static let channel = SimulatedChannels.url(of: "nixos-24.05")
    static let files = [
        "configuration.nix": "{ ... }: {\n  imports = [ ./hardware-configuration.nix ./nk3-agent.nix ];\n}\n",
        "nk3-agent.nix": "{ ... }: { services.nk3-agent.enable = true; }\n",
    ]

    func makeNode(speed: SimulationSpeed = .instant, clock: any AgentClock = SystemAgentClock()) throws -> SimulatedNode {
        try SimulatedNode(
            hostname: "node1", files: Self.files, unmanagedFiles: ["hardware-configuration.nix": "{ ... }: { }\n"],
            channelURL: Self.channel, speed: speed, clock: clock, logger: Self.quiet)
    }

    func changed(_ extra: String) -> [String: String] {
        var f = Self.files
        f["configuration.nix"]! += "# \(extra)\n"
        return f
    }

    /// Polls `condition` until it holds or `timeout` passes.
    func eventually(_ timeout: Duration = .seconds(10), _ condition: () async -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return await condition()
    }

    @Test("installed node: generation 1 booted and current, channel nixos at the first release, kubelet Ready")
    func installed() async throws {
        let node = try makeNode()
        let gens = try await node.generations()
        #expect(gens.profileGeneration == 1)
        #expect(gens.currentSystem == gens.generations[1])
        #expect(gens.bootedSystem == gens.generations[1])
        #expect(gens.generations[1]?.hasPrefix("/nix/store/") == true)
        #expect(gens.generations[1]?.hasSuffix("-nixos-system-node1-24.05.4000.a1b2c3d4e5f6") == true)
        let facts = try await node.facts()
        #expect(facts.kernel == "6.6.45")
        #expect(facts.hostname == "node1")
        let files = try await node.readConfigFiles()
        #expect(files == Self.files, "only the managed files are reported, not hardware-configuration.nix")
        let ch = try await node.channelState()
        #expect(ch.url(named: "nixos") == Self.channel)
        #expect(ch.profileGeneration == 1)
        #expect(await node.kubelet(unit: "k3s") == KubeletState(unit: "k3s", unitActive: true, healthz: true))
    }

    @Test("switch (docs/UPSTREAM.md#nixos-rebuild): profile set then activated; derivations listed; same config → nothing to build, no new generation")
    func switchSemantics() async throws {
        let node = try makeNode()
        let before = try await node.generations()
        try await node.replaceConfigFiles(with: changed("one"))
        let lines = LineCollector()
        let out = try await node.rebuild(.switch, upgrade: false, output: lines.add)
        #expect(out.exitCode == 0)
        #expect(out.output.contains("building the system configuration..."))
        #expect(out.output.contains("these \(out.derivationsToBuild ?? -1) derivations will be built:"))
        #expect((out.derivationsToBuild ?? 0) >= 3)
        #expect(lines.lines.contains { $0.hasPrefix("  /nix/store/") && $0.hasSuffix(".drv") })
        let after = try await node.generations()
        #expect(after.profileGeneration == 2)
        #expect(after.currentSystem == after.generations[2])
        #expect(after.bootedSystem == before.bootedSystem, "booted only changes on reboot")
        #expect(after.generations[2] != before.generations[1])

        let again = try await node.rebuild(.switch, upgrade: false) { _ in }
        #expect(again.exitCode == 0)
        #expect(again.derivationsToBuild == nil)
        #expect(!again.output.contains("will be built"))
        let same = try await node.generations()
        #expect(same.profileGeneration == 2)
        #expect(same.generations.count == 2, "nix-env --set of the highest generation's path makes no new one")
        #expect(same.currentSystem == after.currentSystem)
    }

    @Test("boot (docs/UPSTREAM.md#nixos-rebuild): profile set, current unchanged; reboot boots it with a new boot id")
    func bootThenReboot() async throws {
        let node = try makeNode()
        let before = try await node.generations()
        let bootIDBefore = try await node.facts().bootID
        try await node.replaceConfigFiles(with: changed("boot"))
        let out = try await node.rebuild(.boot, upgrade: false) { _ in }
        #expect(out.exitCode == 0)
        let after = try await node.generations()
        #expect(after.profileGeneration == 2)
        #expect(after.currentSystem == before.currentSystem)
        #expect(after.bootedSystem == before.bootedSystem)

        try await node.reboot()
        #expect(await eventually { node.snapshot.power == .up && node.snapshot.bootID != bootIDBefore })
        let rebooted = try await node.generations()
        #expect(rebooted.currentSystem == after.generations[2])
        #expect(rebooted.bootedSystem == after.generations[2])
        #expect(try await node.facts().bootID != bootIDBefore)
        #expect(try await node.facts().uptimeSeconds < 60)
        #expect(await eventually { node.snapshot.kubeletReady }, "kubelet turns Ready some time after boot")
    }

    @Test("test (docs/UPSTREAM.md#nixos-rebuild): current only; profile and boot default untouched, a reboot returns to the profile")
    func testAction() async throws {
        let node = try makeNode()
        let before = try await node.generations()
        try await node.replaceConfigFiles(with: changed("test"))
        let out = try await node.rebuild(.test, upgrade: false) { _ in }
        #expect(out.exitCode == 0)
        let after = try await node.generations()
        #expect(after.profileGeneration == 1)
        #expect(after.generations.count == 1)
        #expect(after.currentSystem != before.currentSystem)
        try await node.reboot()
        #expect(await eventually { node.snapshot.power == .up && node.snapshot.boots == 2 })
        #expect(try await node.generations().currentSystem == before.generations[1])
    }

    @Test("--upgrade with a newer channel release: new channel generation, new generation with the newer kernel (6.6.45 → 6.6.46)")
    func upgradeKernel() async throws {
        let node = try makeNode()
        let out = try await node.rebuild(.boot, upgrade: true) { _ in }
        #expect(out.exitCode == 0)
        #expect(out.output.contains("unpacking channels..."))
        #expect(out.output.contains("linux-6.6.46"))
        let gens = try await node.generations()
        #expect(gens.kernels[2] == "6.6.46")
        #expect(gens.kernels[1] == "6.6.45")
        #expect(try await node.channelState().profileGeneration == 2)
        #expect(try await node.facts().kernel == "6.6.45", "the running kernel changes only by rebooting")

        let again = try await node.rebuild(.boot, upgrade: true) { _ in }
        #expect(again.exitCode == 0)
        #expect(again.derivationsToBuild == nil, "no upgrade needed: same channel, same config, same store path")
        #expect(try await node.generations().generations.count == 2)

        try await node.reboot()
        #expect(await eventually { node.snapshot.power == .up && node.snapshot.boots == 2 })
        #expect(try await node.facts().kernel == "6.6.46")
    }

    @Test("bogus channel (docs/UPSTREAM.md#channels): --add succeeds, --upgrade fails with HTTP error 404, restore puts the list back")
    func bogusChannel() async throws {
        let node = try makeNode()
        let saved = try await node.channelState()
        let bogus = "https://nixos.org/channels/nixos-bogus"
        try await node.addChannel(url: bogus, name: "nixos")
        #expect(try await node.channelState().url(named: "nixos") == bogus)
        let out = try await node.rebuild(.switch, upgrade: true) { _ in }
        #expect(out.exitCode == 1)
        #expect(out.output.contains("error: unable to download '\(bogus)': HTTP error 404"))
        #expect(try await node.channelState().profileGeneration == saved.profileGeneration)
        #expect(try await node.generations().profileGeneration == 1)
        try await node.restoreChannel(saved)
        #expect(try await node.channelState() == saved)
    }

    @Test("nix-channel --add refuses a URL without http(s)/file scheme (docs/UPSTREAM.md#channels)")
    func invalidChannelURL() async throws {
        let node = try makeNode()
        await #expect(throws: NodeSystemError.self) { try await node.addChannel(url: "nixos-24.05", name: "nixos") }
    }

    @Test("injected evaluation error: exit 1 with nix's message, nothing built, profile unchanged")
    func evaluationError() async throws {
        let node = try makeNode()
        node.setFaults { $0.rebuildEvaluationError = SimulatedNode.Faults.defaultEvaluationError }
        try await node.replaceConfigFiles(with: changed("broken"))
        let out = try await node.rebuild(.switch, upgrade: false) { _ in }
        #expect(out.exitCode == 1)
        #expect(out.output.contains("error: undefined variable 'foo'"))
        #expect(out.output.contains("at /etc/nixos/configuration.nix:12:3"))
        let gens = try await node.generations()
        #expect(gens.profileGeneration == 1)
        #expect(gens.generations.count == 1)
    }

    @Test("activate (docs/UPSTREAM.md#generations): switch moves profile and current, boot the profile only, test current only")
    func activate() async throws {
        let node = try makeNode()
        try await node.replaceConfigFiles(with: changed("two"))
        _ = try await node.rebuild(.switch, upgrade: false) { _ in }
        let g = try await node.generations()
        try await node.activate(generation: 1, mode: .boot)
        var now = try await node.generations()
        #expect(now.profileGeneration == 1)
        #expect(now.currentSystem == g.generations[2])
        try await node.activate(generation: 2, mode: .test)
        now = try await node.generations()
        #expect(now.profileGeneration == 1)
        #expect(now.currentSystem == g.generations[2])
        try await node.activate(generation: 1, mode: .switch)
        now = try await node.generations()
        #expect(now.profileGeneration == 1)
        #expect(now.currentSystem == g.generations[1])
        #expect(now.generations.count == 2, "activating makes no new generation")
        await #expect(throws: NodeSystemError.self) { try await node.activate(generation: 9, mode: .switch) }
    }

    @Test("same configuration after a rollback: nix-env --set makes generation highest+1 pointing at the old path (docs/UPSTREAM.md#generations)")
    func setAfterRollback() async throws {
        let node = try makeNode()
        let original = try await node.readConfigFiles()
        try await node.replaceConfigFiles(with: changed("x"))
        _ = try await node.rebuild(.switch, upgrade: false) { _ in }
        try await node.activate(generation: 1, mode: .switch)
        try await node.replaceConfigFiles(with: original)
        let out = try await node.rebuild(.switch, upgrade: false) { _ in }
        #expect(out.derivationsToBuild == nil, "the store path exists already")
        let g = try await node.generations()
        #expect(g.profileGeneration == 3)
        #expect(g.generations[3] == g.generations[1])
    }

    @Test("faults: a hanging reboot keeps the boot id; a node that never returns stays down until powered on")
    func rebootFaults() async throws {
        let node = try makeNode()
        let id = node.snapshot.bootID
        node.setFaults { $0.rebootHangs = true }
        try await node.reboot()
        #expect(node.snapshot.power == .up)
        #expect(node.snapshot.bootID == id)

        node.setFaults {
            $0.rebootHangs = false
            $0.neverReturnsAfterReboot = true
        }
        try await node.reboot()
        #expect(node.snapshot.power == .down)
        await #expect(throws: NodeSystemError.self) { try await node.facts() }
        try await Task.sleep(for: .milliseconds(50))
        #expect(node.snapshot.power == .down, "never returns")
        node.setFaults { $0.neverReturnsAfterReboot = false }
        node.powerOn()
        #expect(node.snapshot.power == .up)
        #expect(node.snapshot.bootID != id)
    }

    @Test("fault: the kubelet never turns Ready after a boot")
    func kubeletNeverReady() async throws {
        let node = try makeNode()
        node.setFaults { $0.kubeletNeverReady = true }
        try await node.reboot()
        #expect(await eventually { node.snapshot.power == .up })
        try await Task.sleep(for: .milliseconds(50))
        #expect(!node.snapshot.kubeletReady)
        #expect(await node.kubelet(unit: "k3s") == KubeletState(unit: "k3s", unitActive: true, healthz: false))
    }

    @Test("speed factor on a manual clock: a 60 s reboot at 60x waits one clock second, then boots")
    func speedFactor() async throws {
        let clock = ManualAgentClock(start: Date(timeIntervalSince1970: 1_700_000_000))
        let node = try makeNode(speed: .factor(60), clock: clock)
        try await node.reboot()
        #expect(await eventually { clock.sleeperCount == 1 })
        clock.advance(by: 0.5)
        try await Task.sleep(for: .milliseconds(20))
        #expect(node.snapshot.power == .down, "half the downtime has passed")
        clock.advance(by: 0.6)
        #expect(await eventually { node.snapshot.power == .up })
        #expect(!node.snapshot.kubeletReady, "kubelet Ready comes 15 simulated s (0.25 clock s) after boot")
        #expect(await eventually { clock.sleeperCount == 1 })
        clock.advance(by: 0.3)
        #expect(await eventually { node.snapshot.kubeletReady })
        node.shutdown()
    }

    @Test("the agent engine over a simulated node: apply switch awaits confirm, the deadline rolls it back")
    func engineRollsBackOnDeadline() async throws {
        let clock = ManualAgentClock(start: Date(timeIntervalSince1970: 1_700_000_000))
        let node = try makeNode(clock: clock)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sim-engine-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let engine = try ApplyEngine(system: node, stateDir: dir, clock: clock, logger: Self.quiet)
        await engine.start()
        let bundle = ApplyBundle(files: changed("engine"), action: .switch, confirmTimeoutSeconds: 60)
        let payload = CommandPayload(
            node: "node1", serial: 1, issuedAt: clock.now(), expiresAt: clock.now().addingTimeInterval(300),
            command: .apply(bundle))
        _ = try await engine.handle(payload)
        await engine.waitUntilSettled()
        #expect(await engine.status().operation?.phase == .awaitingConfirm)
        #expect(try await node.generations().profileGeneration == 2)
        clock.advance(by: 61)
        #expect(await eventually { await engine.state.apply == nil })
        await engine.waitUntilSettled()
        #expect(await engine.state.lastResult?.outcome == .rolledBack)
        let g = try await node.generations()
        #expect(g.profileGeneration == 1)
        #expect(g.currentSystem == g.generations[1])
        #expect(try await node.readConfigFiles() == Self.files)
    }
}

/// Collects output lines from a `@Sendable` callback.
final class LineCollector: Sendable {
    private let storage = Mutex<[String]>([])
    var lines: [String] { storage.withLock { $0 } }
    var add: @Sendable (String) -> Void { { line in self.storage.withLock { $0.append(line) } } }
}

