import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

@Suite("Plan")
struct PlanTests {
    @Test("equal files: No action needed on X")
    func noAction() {
        let files = ["configuration.nix": "a\n", "nk3-agent.nix": "b\n"]
        let plans = Plan.compute(rendered: ["n1": files], landed: ["n1": files])
        #expect(plans.count == 1)
        #expect(!plans[0].needsApply)
        #expect(plans[0].describe(color: false) == "No action needed on n1\n")
        #expect(plans[0].renderedHash == plans[0].landedHash)
        #expect(plans[0].renderedHash == ConfigFiles.hash(files: files))
    }

    @Test("a changed configuration.nix prints 'X modified:' and the diff; added and removed files are named")
    func modified() {
        let plans = Plan.compute(
            rendered: ["n2": ["configuration.nix": "a\nb\n", "nk3-agent.nix": "x\n"], "n1": ["configuration.nix": "z\n"]],
            landed: ["n2": ["configuration.nix": "a\n", "old.nix": "o\n"]],
            order: ["n2"])
        #expect(plans.map(\.node) == ["n2", "n1"])
        let p = plans[0]
        #expect(p.changes.map(\.name) == ["configuration.nix", "nk3-agent.nix", "old.nix"])
        #expect(p.changes.map(\.kind) == [.modified, .added, .removed])
        #expect(
            p.describe(color: false).hasPrefix(
                "n2 modified:\n--- landed/configuration.nix\n+++ rendered/configuration.nix\n@@ -1 +1,2 @@\n a\n+b\n"))
        #expect(p.changes[1].diff.hasPrefix("--- /dev/null\n+++ rendered/nk3-agent.nix\n@@ -0,0 +1 @@\n+x\n"))
        #expect(p.changes[2].diff.hasPrefix("--- landed/old.nix\n+++ /dev/null\n@@ -1 +0,0 @@\n-o\n"))
        // A node the agent reported nothing for: everything is added.
        #expect(plans[1].changes.map(\.kind) == [.added])
        #expect(p.describe(color: true).contains("\u{1B}[32m+b\u{1B}[0m"))
    }

    @Test("isLanded compares the agent's reported hashes")
    func landedByHash() {
        let files = ["configuration.nix": "a\n"]
        let status = AgentStatus(
            hostname: "n1", kernel: "6.6.46", nixosVersion: nil, currentSystem: nil, bootedSystem: nil,
            currentGeneration: nil, bootedGeneration: nil, profileGeneration: nil, bootID: "b", uptimeSeconds: 1,
            configHash: ConfigFiles.hash(files: files), files: ConfigFiles.digests(files), channel: nil,
            lastAcceptedSerial: nil, operation: nil, lastResult: nil,
            kubelet: KubeletState(unit: "k3s", unitActive: true, healthz: true))
        #expect(Plan.isLanded(rendered: files, status: status))
        #expect(!Plan.isLanded(rendered: ["configuration.nix": "b\n"], status: status))
    }
}
