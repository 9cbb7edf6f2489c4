import Foundation
import Logging
import NK3Agent
import NK3Protocol
import NK3TestSupport
import Testing

/// One contract for every `NodeSystem` (as swift-configuration's ProviderCompatTest runs one suite for every
/// provider): the real backend against a fake root and the simulated node must behave the same way wherever
/// the apply engine relies on it.
@Suite("NodeSystem contract", .serialized, .timeLimit(.minutes(2)))
struct BackendContractTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case nixosOnFakeRoot, simulatedNode
        var testDescription: String { rawValue }
    }

    /// Keeps the fake root alive for the duration of a test.
    final class Subject: Sendable {
        let system: any NodeSystem
        let fake: EngineFakeRoot?
        init(system: any NodeSystem, fake: EngineFakeRoot?) {
            self.system = system
            self.fake = fake
        }
    }

    func make(_ kind: Kind) throws -> Subject {
        switch kind {
        case .nixosOnFakeRoot:
            let fake = try EngineFakeRoot()
            return Subject(system: fake.system(), fake: fake)
        case .simulatedNode:
            return Subject(
                system: try SimulatedNode(hostname: "node1", files: EngineFakeRoot.initialFiles, logger: EngineKit.logger),
                fake: nil)
        }
    }

    @Test("config files: whole-set replace and restore; bad names refused", arguments: Kind.allCases)
    func files(_ kind: Kind) async throws {
        let s = try make(kind)
        let old = try await s.system.readConfigFiles()
        #expect(old == EngineFakeRoot.initialFiles)
        let new = EngineKit.newFiles()
        try await s.system.replaceConfigFiles(with: new)
        #expect(try await s.system.readConfigFiles() == new)
        try await s.system.replaceConfigFiles(with: old)
        #expect(try await s.system.readConfigFiles() == old)
        await #expect(throws: NodeSystemError.self) { try await s.system.replaceConfigFiles(with: ["../x": "y"]) }
        #expect(try await s.system.readConfigFiles() == old)
    }

    @Test("channel: --add changes the list, restoreChannel puts back exactly what was saved (docs/UPSTREAM.md#channels)",
        arguments: Kind.allCases)
    func channel(_ kind: Kind) async throws {
        let s = try make(kind)
        let saved = try await s.system.channelState()
        #expect(saved.url(named: "nixos") != nil)
        try await s.system.addChannel(url: "https://channels.nixos.org/nixos-bogus-00.00", name: "nixos")
        #expect(try await s.system.channelState().url(named: "nixos") == "https://channels.nixos.org/nixos-bogus-00.00")
        try await s.system.restoreChannel(saved)
        #expect(try await s.system.channelState() == saved)
    }

    @Test("rebuild switch makes a new profile generation; activate(previous) moves profile and live system back",
        arguments: Kind.allCases)
    func generations(_ kind: Kind) async throws {
        let s = try make(kind)
        let before = try await s.system.generations()
        let prev = try #require(before.profileGeneration)
        #expect(before.currentSystem == before.profileSystem)
        #expect(!(try await s.system.facts().bootID.isEmpty))

        // Nothing changed: no new generation.
        let same = try await s.system.rebuild(.switch, upgrade: false) { _ in }
        #expect(same.exitCode == 0)
        #expect(try await s.system.generations().profileGeneration == prev)

        try await s.system.replaceConfigFiles(with: EngineKit.newFiles())
        let outcome = try await s.system.rebuild(.switch, upgrade: false) { _ in }
        #expect(outcome.exitCode == 0, "\(outcome.output)")
        let after = try await s.system.generations()
        let next = try #require(after.profileGeneration)
        #expect(next > prev)
        #expect(after.currentSystem == after.profileSystem)
        #expect(after.currentSystem != before.currentSystem)

        try await s.system.activate(generation: prev, mode: .switch)
        let back = try await s.system.generations()
        #expect(back.profileGeneration == prev)
        #expect(back.currentSystem == before.currentSystem)
        await #expect(throws: NodeSystemError.self) { try await s.system.activate(generation: 999, mode: .switch) }
    }

    @Test("an evaluation error exits non-zero with nix's error text and moves nothing", arguments: Kind.allCases)
    func evalError(_ kind: Kind) async throws {
        let s = try make(kind)
        let before = try await s.system.generations()
        var files = EngineKit.newFiles()
        files["configuration.nix"]! += "# EVAL_ERROR\n  undefinedThing = foo;\n"
        try await s.system.replaceConfigFiles(with: files)
        if let sim = s.system as? SimulatedNode {
            sim.setFaults { $0.rebuildEvaluationError = SimulatedNode.Faults.defaultEvaluationError }
        }
        let outcome = try await s.system.rebuild(.switch, upgrade: false) { _ in }
        #expect(outcome.exitCode != 0)
        #expect(outcome.output.contains("error: undefined variable"))
        #expect(try await s.system.generations() == before)
    }
}
