import Foundation
import Logging
import NK3Agent
import NK3Protocol
import NK3Simulation
import Synchronization
import Testing

/// The simulated node's boot loader (SimulatedNode+BootLoader.swift), a SIMULATION of GRUB / systemd-boot on
/// NixOS: a default entry, a one-shot entry the next boot consumes whether or not that boot succeeds, a
/// generation whose kernel never boots (the machine hangs until a reset), one that never starts the agent, and
/// a reset that boots the default.
@Suite("SimulatedNode boot loader (simulation)", .timeLimit(.minutes(1)))
struct SimulatedBootLoaderTests {
    static let quiet = SimulatedNodeTests.quiet

    func makeNode(_ loader: TrialBootLoader? = .grub) throws -> SimulatedNode {
        try SimulatedNode(
            hostname: "node1", files: SimulatedNodeTests.files,
            unmanagedFiles: ["hardware-configuration.nix": "{ ... }: { }\n"], channelURL: SimulatedNodeTests.channel,
            bootLoader: loader, logger: Self.quiet)
    }

    /// Builds generation 2 with `nixos-rebuild boot`, then arms a trial: generation 1 default, 2 once.
    func armTrial(_ node: SimulatedNode) async throws -> GenerationState {
        try await node.replaceConfigFiles(with: SimulatedNodeTests().changed("trial"))
        #expect(try await node.rebuild(.boot, upgrade: false) { _ in }.exitCode == 0)
        #expect(node.snapshot.bootDefault == 2, "switch-to-configuration boot made the new generation the default")
        try await node.setBootDefault(generation: 1)
        try await node.setBootOnce(generation: 2)
        #expect(node.snapshot.bootDefault == 1)
        #expect(node.snapshot.bootOnce == 2)
        #expect(node.snapshot.profileGeneration == 2, "the profile is not moved")
        return try await node.generations()
    }

    func rebootAndWait(_ node: SimulatedNode) async throws {
        let boots = node.snapshot.boots
        try await node.reboot()
        #expect(await SimulatedNodeTests().eventually { node.snapshot.boots == boots + 1 })
    }

    @Test("one-shot: the next boot runs the new generation, the one after that the default again")
    func oneShotOnce() async throws {
        let node = try makeNode()
        let gens = try await armTrial(node)
        try await rebootAndWait(node)
        #expect(node.snapshot.power == .up)
        #expect(node.snapshot.bootedSystem == gens.generations[2])
        #expect(node.snapshot.bootOnce == nil, "consumed")
        try await rebootAndWait(node)
        #expect(node.snapshot.bootedSystem == gens.generations[1], "not confirmed: the default boots")
    }

    @Test("a kernel that never boots: the machine hangs (no boot id) until a reset, which boots the default")
    func kernelPanicThenReset() async throws {
        let node = try makeNode()
        node.setFaults { $0.newGenerationsDoNotBoot = .kernelPanics }
        let gens = try await armTrial(node)
        let bootID = node.snapshot.bootID
        try await rebootAndWait(node)
        #expect(node.snapshot.power == .down)
        #expect(node.snapshot.failedBoots == 1)
        #expect(node.snapshot.bootID == bootID, "no new boot id: nothing came up")
        #expect(node.snapshot.bootOnce == nil, "the failed boot spent the one-shot")
        node.reset()
        #expect(node.snapshot.power == .up)
        #expect(node.snapshot.bootedSystem == gens.generations[1])
        #expect(node.snapshot.bootID != bootID)
    }

    @Test("a watchdog/panic=N reset follows a failed boot by itself when resetAfterFailedBoot is set")
    func automaticReset() async throws {
        let node = try makeNode()
        node.setFaults {
            $0.newGenerationsDoNotBoot = .kernelPanics
            $0.resetAfterFailedBoot = true
        }
        let gens = try await armTrial(node)
        try await node.reboot()
        // A deadline with slack, not a speed target: the full suite keeps both cores busy (one run saw > 10 s).
        #expect(await SimulatedNodeTests().eventually(.seconds(90)) { node.snapshot.power == .up })
        #expect(node.snapshot.failedBoots == 1)
        #expect(node.snapshot.bootedSystem == gens.generations[1])
    }

    @Test("a generation that never starts the agent: the machine is up, the cluster is told no agent runs")
    func agentNeverStarts() async throws {
        let node = try makeNode()
        let events = Mutex<[SimulatedNode.Event]>([])
        node.onEvent { e in events.withLock { $0.append(e) } }
        node.setFaults { $0.newGenerationsDoNotBoot = .agentNeverStarts }
        let gens = try await armTrial(node)
        try await rebootAndWait(node)
        #expect(node.snapshot.power == .up)
        #expect(node.snapshot.bootedSystem == gens.generations[2])
        let seen = events.withLock { $0 }
        #expect(seen.contains { if case .bootedWithoutAgent = $0 { return true } else { return false } })
        #expect(!seen.contains { if case .booted = $0 { return true } else { return false } })
    }

    @Test("without a trial-boot loader a one-shot is refused; the default follows switch/boot and activation")
    func noLoader() async throws {
        let node = try makeNode(nil)
        #expect(await node.trialBootLoader() == nil)
        await #expect(throws: NodeSystemError.self) { try await node.setBootOnce(generation: 1) }
        try await node.replaceConfigFiles(with: SimulatedNodeTests().changed("x"))
        _ = try await node.rebuild(.boot, upgrade: false) { _ in }
        #expect(node.snapshot.bootDefault == 2)
        try await node.activate(generation: 1, mode: .boot)
        #expect(node.snapshot.bootDefault == 1)
    }
}
