import Foundation
import NK3Coordinator
import NK3Kube
import NK3Simulation
import Testing

/// A person's cordon after nk3's, made with the real `kubectl` against the simulated API: `kubectl uncordon` keeps nk3's
/// annotations, so only `metadata.managedFields` tell the cordon is the person's now.
extension E2E {
    @Suite("E2E: a person's cordon after nk3's (simulation, real kubectl)", .timeLimit(.minutes(2)))
    struct E2EPersonCordonTests {
        static let kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }

        /// Runs `kubectl ARGS --kubeconfig …`; returns its exit status.
        static func kubectl(_ args: [String], kubeconfig: String, home: URL) async throws -> Int32 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: kubectl!)
            process.arguments = args + ["--kubeconfig", kubeconfig, "--cache-dir", home.appendingPathComponent("cache").path, "--request-timeout", "20s"]
            process.environment = ["HOME": home.path, "PATH": "/usr/bin:/bin"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return try await withCheckedThrowingContinuation { continuation in
                process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                do { try process.run() } catch { continuation.resume(throwing: error) }
            }
        }

        @Test("nk3's old cordon, then kubectl uncordon + kubectl cordon: the rollout skips the node, held by kubectl",
              .enabled(if: kubectl != nil, "needs kubectl (the Debian package kubernetes-client)"))
        func personRecordonsAfterNK3() async throws {
            try await E2ECluster.with { c in
                // An earlier nk3 run's cordon, left behind.
                let config = try KubeConfig.load(path: c.sim.kubeconfigPath, context: nil)
                let outcome = try await KubeClient.withClient(config: config, options: c.sim.kubeClientOptions, logger: E2ECluster.quiet) {
                    try await $0.cordon(node: "sim-node-2", by: "nk3/earlier@run", reason: "rollout")
                }
                #expect(outcome == .cordoned)
                // The person: `kubectl uncordon sim-node-2`, later `kubectl cordon sim-node-2`.
                let home = c.directory.appendingPathComponent("kubectl-home")
                for verb in ["uncordon", "cordon"] {
                    #expect(try await Self.kubectl([verb, "sim-node-2"], kubeconfig: c.sim.kubeconfigPath, home: home) == 0)
                }
                #expect(c.sim.kube.state.node("sim-node-2")?.annotation(NK3Annotations.cordonedBy) == "nk3/earlier@run")
                try c.editTemplate()
                let sink = E2ESink()
                let summary = try await c.rollout(.apply(.boot), sink: sink)
                #expect(summary.skippedCordoned == ["sim-node-2"], "\(sink.transcript)")
                #expect(sink.messages.contains { $0.hasPrefix("sim-node-2 is cordoned by someone else (held by kubectl") }, "\(sink.transcript)")
                #expect(c.cordoned() == ["sim-node-2"], "still cordoned")
            }
        }
    }
}
