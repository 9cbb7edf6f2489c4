import Foundation
import NK3Common
import NK3Kube
import NK3Simulation
import Testing

/// The fake API server answers the real `kubectl` (discovery first, then the object): evidence that its
/// JSON shapes and discovery endpoints are the API's, not just what our own client expects.
@Suite("kubectl against the fake API server", .serialized)
struct KubectlCompatTests {
    static let kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Runs kubectl with its own cache dir; returns (exit code, stdout, stderr). The blocking waits run on
    /// a dedicated thread, never on the cooperative pool that serves the fake API's handlers.
    func run(_ args: [String], dir: String, command: [String] = []) async throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.kubectl!)
        process.arguments =
            args + ["--kubeconfig", dir + "/kubeconfig", "--cache-dir", dir + "/cache", "--request-timeout", "20s"]
            + (command.isEmpty ? [] : ["--"] + command)
        process.environment = ["HOME": dir, "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                let group = DispatchGroup()
                nonisolated(unsafe) var stderr = Data()
                group.enter()
                DispatchQueue.global().async {
                    stderr = ((try? SecureFiles.readAll(err.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
                    group.leave()
                }
                let stdout = ((try? SecureFiles.readAll(out.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data())
                group.wait()
                process.waitUntilExit()
                continuation.resume(
                    returning: (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self)))
            }
            thread.start()
        }
    }

    @Test("kubectl get node X -o json, and kubectl get pdb -o json, decode to what the fake holds",
          .enabled(if: kubectl != nil), .timeLimit(.minutes(2)))
    func kubectlGet() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        let dir = try temporaryDirectory()
        try server.writeKubeconfig(to: dir + "/kubeconfig")
        server.state.addNode("n1", controlPlane: true, kernelVersion: "6.6.30", bootID: "boot-xyz")
        server.state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
        server.state.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(1))

        let (code, stdout, stderr) = try await run(["get", "node", "n1", "-o", "json"], dir: dir)
        #expect(code == 0, "kubectl failed: \(stderr)")
        let node = try JSONDecoder().decode(Node.self, from: Data(stdout.utf8))
        #expect(node.name == "n1")
        #expect(node.bootID == "boot-xyz")
        #expect(node.readyCondition?.reason == "KubeletReady")

        let (pcode, pout, perr) = try await run(["get", "pdb", "web-pdb", "-n", "default", "-o", "json"], dir: dir)
        #expect(pcode == 0, "kubectl failed: \(perr)")
        let pdb = try JSONDecoder().decode(PodDisruptionBudget.self, from: Data(pout.utf8))
        #expect(pdb.status?.disruptionsAllowed == 0)
        #expect(pdb.status?.currentHealthy == 1)

        let (mcode, _, merr) = try await run(["get", "node", "ghost", "-o", "json"], dir: dir)
        #expect(mcode != 0)
        #expect(merr.contains("nodes \"ghost\" not found"))
        await server.shutdown()
    }

    @Test("nk3's cordon, then a person's kubectl uncordon + kubectl cordon (annotations kept): held by kubectl, not uncordoned",
          .enabled(if: kubectl != nil), .timeLimit(.minutes(2)))
    func personRecordonsAfterNK3() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        let dir = try temporaryDirectory()
        try server.writeKubeconfig(to: dir + "/kubeconfig")
        server.state.addNode("n1")
        try await KubeClient.withClient(config: try server.clientConfig(), options: fastOptions, logger: quietLogger) { client in
            #expect(try await client.cordon(node: "n1", by: "nk3/alice@laptop", reason: "rollout") == .cordoned)
            let mine = try await client.getNode("n1")
            #expect(mine.unschedulableManager == "nk3")
            #expect(mine.isCordonedByNK3)
            for verb in ["uncordon", "cordon"] {
                let (code, _, stderr) = try await run([verb, "n1"], dir: dir)
                #expect(code == 0, "kubectl \(verb) failed: \(stderr)")
            }
            let node = try await client.getNode("n1")
            #expect(node.isUnschedulable)
            #expect(node.annotation(NK3Annotations.cordonedBy) == "nk3/alice@laptop", "kubectl keeps annotations")
            // The manager is the real kubectl's: its fieldManager, else its User-Agent's prefix.
            let manager = try #require(node.unschedulableManager)
            #expect(manager.hasPrefix("kubectl"))
            #expect(!node.isCordonedByNK3)
            #expect(node.cordonHolder == manager)
            let refusal = await #expect(throws: KubeError.self) { try await client.uncordonIfCordonedByNK3(node: "n1") }
            #expect(refusal?.code == .refused)
            #expect(refusal?.message.contains("held by someone else (spec.unschedulable was set by \(manager))") == true, "\(refusal?.message ?? "")")
            #expect(try await client.getNode("n1").isUnschedulable, "still cordoned")
            #expect(try await client.cordon(node: "n1", by: "nk3/bob@ci", reason: "rollout") == .alreadyCordonedByOther)
        }
        await server.shutdown()
    }
}

extension KubectlCompatTests {
    @Test("kubectl exec into the simulated toolbox speaks the fake's pods/exec WebSocket: output and exit codes come through",
          .enabled(if: kubectl != nil), .timeLimit(.minutes(2)))
    func kubectlExec() async throws {
        let server = try await FakeKubeServer.start(logger: quietLogger)
        let dir = try temporaryDirectory()
        try server.writeKubeconfig(to: dir + "/kubeconfig")
        server.state.addNode("n1")
        server.state.addPod(
            namespace: "rook-ceph", name: "rook-ceph-tools-abc", node: "n1", labels: ["app": "rook-ceph-tools"],
            owner: ("ReplicaSet", "rook-ceph-tools-5b6c7d"))
        server.state.setCephHealthAsCephSees(health: "HEALTH_OK")

        let (code, stdout, stderr) = try await run(
            ["exec", "-n", "rook-ceph", "rook-ceph-tools-abc"], dir: dir, command: ["ceph", "status", "-f", "json"])
        #expect(code == 0, "kubectl exec failed: \(stderr)")
        let report = try JSONDecoder().decode(CephStatusReport.self, from: Data(stdout.utf8))
        #expect(report.health.status == "HEALTH_OK")

        let (other, _, otherErr) = try await run(["exec", "-n", "rook-ceph", "rook-ceph-tools-abc"], dir: dir, command: ["ls"])
        #expect(other == 127, "\(otherErr)")
        await server.shutdown()
    }
}
