import Foundation
import Logging
import NK3Kube

/// Scenario `probe`: one Kubernetes node GET as a health probe. nk3 asks from its own process over a
/// kept-alive TLS connection (`KubeClient`); the Python tool ran `kubectl get node NAME -o json` each time.
/// Both ask the same fake API server (real TLS, client certificate from the same kubeconfig).
///
/// CPU: for nk3 the `RUSAGE_SELF` delta over a batch of probes divided by the batch size — which also counts
/// the fake API server's work (it runs in this process), so nk3 is charged for both ends; for kubectl the
/// child's own usage from `wait4` (the server's share is not added), so the ratio is conservative.
struct ProbeBench {
    let options: BenchRunner.Options
    let logger: Logger

    func run(into result: inout BenchScenarioResult, in dir: URL) async throws {
        let server = try await FakeKubeServer.start(logger: logger)
        do {
            try await measure(server: server, into: &result, in: dir)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    private func measure(server: FakeKubeServer, into result: inout BenchScenarioResult, in dir: URL) async throws {
        let nodeName = "bench-node-1"
        server.state.addNode(nodeName, controlPlane: true)
        let kubeconfig = dir.appendingPathComponent("kubeconfig.yaml").path
        let config = try server.writeKubeconfig(to: kubeconfig)
        let clock = ContinuousClock()

        // nk3: one client, one kept-alive connection; warm it up (handshake, lazy init) first.
        var wall: [Double] = []
        var cpu: [Double] = []
        try await KubeClient.withClient(config: config, logger: logger) { kube in
            for _ in 0..<5 { _ = try await kube.getNode(nodeName) }
            let batch = max(1, options.probeRuns / 20)
            var done = 0
            while done < options.probeRuns {
                let n = min(batch, options.probeRuns - done)
                let cpu0 = BenchProcess.selfCPUSeconds()
                for _ in 0..<n {
                    let t = clock.now
                    let node = try await kube.getNode(nodeName)
                    wall.append(t.duration(to: clock.now).milliseconds)
                    guard node.metadata.name == nodeName else { throw BenchError("the probe returned another node") }
                }
                cpu.append((BenchProcess.selfCPUSeconds() - cpu0) * 1000 / Double(n))
                done += n
            }
        }
        let nk3Wall = BenchFigure("nk3 KubeClient GET: wall", unit: "ms", samples: wall)
        let nk3CPU = BenchFigure("nk3 KubeClient GET: CPU (client + in-process server)", unit: "ms", samples: cpu)
        result.figures += [nk3Wall, nk3CPU]

        guard let kubectl = BenchProcess.which(options.kubectl) else {
            result.skipped = "kubectl not found (looked for '\(options.kubectl)' on PATH): only nk3's side was measured"
            return
        }
        let cacheDir = dir.appendingPathComponent("kubectl-cache").path
        let args = ["--kubeconfig", kubeconfig, "--cache-dir", cacheDir, "get", "node", nodeName, "-o", "json"]
        // First run: check it works against the fake API (and fill kubectl's discovery cache, as a user's is).
        let out = dir.appendingPathComponent("kubectl.out").path
        let err = dir.appendingPathComponent("kubectl.err").path
        let first = try await BenchProcess.run(kubectl, args, stdout: out, stderr: err)
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard first.status == 0, text.contains("\"name\": \"\(nodeName)\"") else {
            let e = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            throw BenchError("kubectl get node failed against the fake API (exit \(first.status)): \(e.prefix(400))")
        }
        var kWall: [Double] = []
        var kCPU: [Double] = []
        var kRSS: [Double] = []
        for _ in 0..<options.kubectlRuns {
            let t = clock.now
            let exit = try await BenchProcess.run(kubectl, args)
            kWall.append(t.duration(to: clock.now).milliseconds)
            guard exit.status == 0 else { throw BenchError("kubectl exited \(exit.status)") }
            kCPU.append(exit.cpuSeconds * 1000)
            kRSS.append(Double(exit.maxRSSKiB) / 1024)
        }
        let kw = BenchFigure("kubectl get node -o json: wall", unit: "ms", samples: kWall)
        let kc = BenchFigure("kubectl get node -o json: CPU (child rusage)", unit: "ms", samples: kCPU)
        result.figures += [kw, kc, BenchFigure("kubectl get node -o json: peak RSS", unit: "MiB", samples: kRSS)]
        // Ratios of medians, with the spread from the extremes (min ratio = kubectl min / nk3 max).
        func ratio(_ name: String, _ k: BenchFigure, _ n: BenchFigure) -> BenchFigure {
            var f = BenchFigure(
                name, unit: "x", samples: [k.median / n.median], target: "≥ 100×", met: { $0 >= 100 })
            f.min = k.min / n.max
            f.max = k.max / n.min
            f.samples = min(k.samples, n.samples)
            return f
        }
        result.figures.append(ratio("ratio kubectl/nk3: wall", kw, nk3Wall))
        result.figures.append(ratio("ratio kubectl/nk3: CPU", kc, nk3CPU))
        result.notes.append("kubectl: \(kubectl) (discovery cache warmed by one run first, as a user's would be)")
        result.notes.append(
            "nk3 CPU counts this whole process (client AND the in-process fake API server); kubectl CPU is the child only")
    }
}
