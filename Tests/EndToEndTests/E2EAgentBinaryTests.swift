import Foundation
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

/// Agents upgraded by a rollout: the inventory names a release agent binary; the apply uploads it to every node
/// (real mTLS, signed upload envelopes) before the bundle whose `nk3-agent.nix` pins it by its SHA-256, and the
/// simulated node's evaluation refuses a pinned binary that is missing or different, as Nix's `builtins.path`
/// does. (The machines are simulated; the coordinator, the agents and their HTTPS are real.)
@Suite("E2E: the agent binary ships with a rollout (simulation)", .timeLimit(.minutes(5)))
struct E2EAgentBinaryTests {
    /// An ELF-looking file standing in for a release nk3-agent (no kill points, so it passes the release check).
    static func writeBinary(in c: E2ECluster, seed: UInt8) throws -> LocalAgentBinary {
        var d = Data([0x7f, 0x45, 0x4c, 0x46])
        d.append(Data((0..<(5 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }))
        let path = c.directory.appendingPathComponent("nk3-agent-release-\(seed)").path
        try d.write(to: URL(fileURLWithPath: path))
        var yaml = try String(contentsOfFile: c.inventoryPath, encoding: .utf8)
        yaml = yaml.components(separatedBy: "\n").filter { !$0.hasPrefix("agent_binary:") }.joined(separator: "\n")
        yaml += (yaml.hasSuffix("\n") ? "" : "\n") + "agent_binary: \(path)\n"
        try yaml.write(toFile: c.inventoryPath, atomically: true, encoding: .utf8)
        return try LocalAgentBinary(path: path)
    }

    func presence(_ c: E2ECluster, _ binary: LocalAgentBinary) async throws -> [String: Bool] {
        let session = try ClusterSession.load(inventoryPath: c.inventoryPath, overrides: c.sim.sessionOverrides, logger: E2ECluster.quiet)
        var out: [String: Bool] = [:]
        for n in c.names { out[n] = try await session.clients[n]!.agentBinaryPresence(sha256: binary.sha256).present }
        return out
    }

    @Test("agent_binary set: every node gets it uploaded and pinned; a second binary replaces it the same way; a rerun uploads nothing")
    func rolloutShipsTheBinary() async throws {
        try await E2ECluster.with { c in
            let first = try Self.writeBinary(in: c, seed: 1)
            #expect(try await presence(c, first).values.allSatisfy { !$0 })
            let sink = E2ESink()
            let summary = try await c.rollout(.apply(.boot), sink: sink)
            #expect(summary.updated == c.names, "\(sink.transcript)")
            #expect(try await presence(c, first).values.allSatisfy { $0 })
            let session = try ClusterSession.load(inventoryPath: c.inventoryPath, overrides: c.sim.sessionOverrides, logger: E2ECluster.quiet)
            for n in c.names {
                let files = try await session.clients[n]!.files().files
                #expect(files["nk3-agent.nix"]?.contains("binary = \(AgentNix.binaryPath(sha256: first.sha256));") == true, "\(n)")
            }

            // Nothing changed: nothing to upload, nothing to apply.
            let again = E2ESink()
            let rerun = try await c.rollout(.apply(.boot), sink: again)
            #expect(rerun.updated.isEmpty, "\(again.transcript)")

            // A newer agent: uploaded and pinned again.
            let second = try Self.writeBinary(in: c, seed: 2)
            let upgrade = E2ESink()
            #expect(try await c.rollout(.apply(.boot), sink: upgrade).updated == c.names, "\(upgrade.transcript)")
            #expect(try await presence(c, second).values.allSatisfy { $0 })
        }
    }

    @Test("the simulated evaluation refuses a pinned binary that is missing or has other bytes, as builtins.path does")
    func evaluationRefusesAMissingOrDifferentBinary() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-eval-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = Data([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3])
        let binary = try LocalAgentBinary(path: "/x", data: data)
        let nix = AgentNix.render(nodeName: "n1", port: 7443, signingPublicKeys: ["k"], confirmTimeoutSeconds: 600, binary: binary.nixBinary)
        let name = "nk3-agent-" + binary.sha256
        #expect(SimulatedNode.agentBinaryEvaluation(files: ["nk3-agent.nix": nix], agentState: dir)?.first
            == "error: getting status of '\(AgentNix.binaryPath(sha256: binary.sha256))': No such file or directory")
        try Data([0x7f, 0x45, 0x4c, 0x46, 9]).write(to: URL(fileURLWithPath: dir + "/bin/" + name))
        #expect(SimulatedNode.agentBinaryEvaluation(files: ["nk3-agent.nix": nix], agentState: dir)?.first?
            .hasPrefix("error: store path mismatch in (possibly filtered) path added from") == true)
        try data.write(to: URL(fileURLWithPath: dir + "/bin/" + name))
        #expect(SimulatedNode.agentBinaryEvaluation(files: ["nk3-agent.nix": nix], agentState: dir) == nil)
        // The unpinned binary bootstrap placed is not checked.
        let unpinned = AgentNix.render(nodeName: "n1", port: 7443, signingPublicKeys: ["k"], confirmTimeoutSeconds: 600)
        #expect(SimulatedNode.agentBinaryEvaluation(files: ["nk3-agent.nix": unpinned], agentState: dir + "/nowhere") == nil)
    }
}
