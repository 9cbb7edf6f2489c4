import Crypto
import Foundation
import Logging
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol

#if canImport(Glibc)
import Glibc
#endif

/// Scenario `agent`: a real `nk3-agent serve` process (the `NixOSSystem` backend against a fake root in a
/// temp dir, certificates minted fresh with `ClusterCA`): resident memory at idle after start and after
/// 1,000 status requests over mutual TLS, CPU used while idle, and the size of the stripped binary.
struct AgentBench {
    let options: BenchRunner.Options
    let logger: Logger

    /// Process starts measured (each: start, idle, requests, idle).
    var runs: Int { options.quick ? 1 : 3 }

    func run(into result: inout BenchScenarioResult, in dir: URL) async throws {
        guard let binary = options.agentBinary else {
            result.skipped = "no nk3-agent binary given (build it: swift build -c release --product nk3-agent)"
            return
        }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            result.skipped = "nk3-agent binary not found at \(binary) (build it: swift build -c release --product nk3-agent)"
            return
        }
        var idleRSS: [Double] = []
        var busyRSS: [Double] = []
        var quietRSS: [Double] = []
        var idleCPU: [Double] = []
        var requestWall: [Double] = []
        var anonymous: [Double] = []
        var fileBacked: [Double] = []
        var runtimeShared = false
        for run in 0..<runs {
            let m = try await measureProcess(binary: binary, in: dir.appendingPathComponent("run-\(run)"))
            idleRSS.append(m.idleRSS)
            busyRSS.append(m.busyRSS)
            quietRSS.append(m.quietRSS)
            idleCPU.append(m.idleCPU)
            requestWall.append(m.requestsSeconds)
            runtimeShared = runtimeShared || m.runtimeShared
            if let split = m.idleSplit {
                anonymous.append(Double(split.anonymous) / 1024)
                fileBacked.append(Double(split.file) / 1024)
            }
        }
        result.figures.append(
            BenchFigure("RSS at idle after start", unit: "MiB", samples: idleRSS, target: "≤ 16 MB", met: { $0 * 1.048576 <= 16 }))
        if !anonymous.isEmpty {
            result.figures.append(BenchFigure("  idle RSS part: anonymous (heap, stacks)", unit: "MiB", samples: anonymous))
            result.figures.append(BenchFigure("  idle RSS part: file-backed (code, libraries)", unit: "MiB", samples: fileBacked))
        }
        result.figures.append(
            BenchFigure(
                "RSS after \(options.agentRequests) status requests (mTLS)", unit: "MiB", samples: busyRSS, target: "≤ 20 MB",
                met: { $0 * 1.048576 <= 20 }))
        result.figures.append(
            BenchFigure(
                "RSS after those requests and \(Self.format(options.agentIdleSeconds + 1)) s quiet", unit: "MiB",
                samples: quietRSS, target: "≤ 20 MB", met: { $0 * 1.048576 <= 20 }))
        result.figures.append(
            BenchFigure(
                "CPU while idle for \(Self.format(options.agentIdleSeconds)) s", unit: "ms", samples: idleCPU,
                target: "~0 (≤ 10 ms)", met: { $0 <= 10 }))
        result.figures.append(
            BenchFigure("\(options.agentRequests) status requests, 16 in flight: wall", unit: "s", samples: requestWall))

        // Binary size, as shipped (stripped).
        let size = (try? FileManager.default.attributesOfItem(atPath: binary)[.size] as? Int) ?? 0
        result.figures.append(BenchFigure("binary size (as built)", unit: "MiB", samples: [Double(size) / 1_048_576]))
        if let strip = BenchProcess.which(options.strip) {
            let copy = dir.appendingPathComponent("nk3-agent.stripped").path
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: binary, toPath: copy)
            let exit = try await BenchProcess.run(strip, [copy])
            guard exit.status == 0 else { throw BenchError("strip exited \(exit.status)") }
            let stripped = (try FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int) ?? 0
            result.figures.append(
                BenchFigure(
                    "binary size (stripped)", unit: "MiB", samples: [Double(stripped) / 1_048_576], target: "≤ 40 MB",
                    met: { $0 * 1.048576 <= 40 }))
        } else {
            result.notes.append("strip not found: stripped size not measured")
        }
        if runtimeShared {
            result.notes.append(
                "binary: \(binary) (Swift runtime linked dynamically: its .so files are not in this size; "
                    + "scripts/bench.sh builds the agent with --static-swift-stdlib)")
        } else {
            result.notes.append("binary: \(binary) (Swift runtime linked statically: --static-swift-stdlib; glibc and libstdc++ shared)")
        }
        result.notes.append(
            "RSS = VmRSS from /proc/PID/status; idle CPU = utime+stime delta from /proc/PID/stat (10 ms ticks) — "
                + "the agent's kubelet probe runs only when status is asked")
    }

    struct Measured {
        var idleRSS: Double
        var busyRSS: Double
        /// After the quiet period that follows the requests (whether the memory the load took is given back).
        var quietRSS: Double
        var idleCPU: Double
        var requestsSeconds: Double
        var idleSplit: (anonymous: Int, file: Int)?
        /// libswiftCore.so is mapped (the Swift runtime is a shared library, not linked in).
        var runtimeShared: Bool
    }

    private func measureProcess(binary: String, in dir: URL) async throws -> Measured {
        let root = try FakeNodeRoot(in: dir)
        let ca = try ClusterCA.create(cluster: "bench")
        let agentCert = try ca.issueAgent(hostname: "bench-node", addresses: ["127.0.0.1"])
        let reader = try ca.issueClient(name: "bench-reader", role: .reader)
        try root.write("tls/ca.crt", try ca.certificatePEM)
        try root.write("tls/agent.crt", agentCert.certificatePEM)
        try root.write("tls/agent.key", agentCert.privateKeyPEM, mode: 0o600)
        let port = try LoopbackSockets.freePort()
        let config = root.agentConfig(
            port: port, signingKey: Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString())
        let configPath = root.path("agent.json")
        try JSONEncoder().encode(config).write(to: URL(fileURLWithPath: configPath))
        let log = root.path("agent.log")
        let pid = try BenchProcess.spawn(binary, ["serve", "--config", configPath, "--log-level", "info"], stderr: log)
        defer {
            kill(pid, SIGTERM)
            var reaped = false
            for _ in 0..<100 {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid { reaped = true; break }
                usleep(50_000)
            }
            if !reaped {
                kill(pid, SIGKILL)
                _ = BenchProcess.wait(pid)
            }
        }
        // Listening?
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while true {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if text.contains("nk3-agent listening") { break }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw BenchError("nk3-agent exited before listening: \(text.suffix(600))")
            }
            guard clock.now < deadline else { throw BenchError("nk3-agent did not listen within 30 s: \(text.suffix(600))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .seconds(options.quick ? 0.2 : 1))
        let idleRSS = Double(BenchProcess.rssKiB(pid) ?? 0) / 1024
        let idleSplit = BenchProcess.rssSplitKiB(pid)
        let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
        let runtimeShared = maps.contains("libswiftCore.so")

        let client = try AgentClient(
            endpoint: AgentEndpoint(host: "127.0.0.1", port: port, expectedName: "bench-node"),
            trustRoots: try TLSConfigs.trustRoots(pem: try ca.certificatePEM),
            identity: try TLSIdentity(certificatePEM: reader.certificatePEM, privateKeyPEM: reader.privateKeyPEM),
            logger: logger)
        let total = options.agentRequests
        let t0 = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                next += 1
                group.addTask {
                    let s = try await client.status()
                    guard s.hostname == "bench-node" else { throw BenchError("status names \(s.hostname)") }
                }
            }
            while next < min(16, total) { add() }
            while try await group.next() != nil { if next < total { add() } }
        }
        let requestsSeconds = t0.duration(to: clock.now).milliseconds / 1000
        let busyRSS = Double(BenchProcess.rssKiB(pid) ?? 0) / 1024

        try await Task.sleep(for: .seconds(1))  // let the last connections close
        let cpu0 = BenchProcess.cpuSeconds(pid) ?? 0
        try await Task.sleep(for: .seconds(options.agentIdleSeconds))
        let cpu1 = BenchProcess.cpuSeconds(pid) ?? 0
        let quietRSS = Double(BenchProcess.rssKiB(pid) ?? 0) / 1024
        return Measured(idleRSS: idleRSS, busyRSS: busyRSS, quietRSS: quietRSS, idleCPU: (cpu1 - cpu0) * 1000, requestsSeconds: requestsSeconds,
            idleSplit: idleSplit, runtimeShared: runtimeShared)
    }

    static func format(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
}

/// A minimal installed NixOS machine in a directory, enough for the agent to start and report status:
/// /etc/nixos, one system generation, /run/{current,booted}-system, /proc files, a channel list, and a
/// `systemctl` that reports k3s inactive. Mutating commands point at /bin/false (nothing is applied here).
struct FakeNodeRoot {
    let root: String

    init(in dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        root = dir.resolvingSymlinksInPath().path
        let fm = FileManager.default
        for d in [
            "etc/nixos", "nix/store/0000-nixos-system-bench-node-24.05/kernel-modules/lib/modules/6.6.30",
            "nix/var/nix/profiles/per-user/root", "run", "proc/sys/kernel/random", "root", "bin", "tls", "state",
        ] {
            try fm.createDirectory(atPath: "\(root)/\(d)", withIntermediateDirectories: true)
        }
        let system = "\(root)/nix/store/0000-nixos-system-bench-node-24.05"
        try write("nix/store/0000-nixos-system-bench-node-24.05/nixos-version", "24.05.1\n")
        try fm.createSymbolicLink(atPath: "\(root)/nix/var/nix/profiles/system-1-link", withDestinationPath: system)
        try fm.createSymbolicLink(atPath: "\(root)/nix/var/nix/profiles/system", withDestinationPath: "system-1-link")
        try fm.createSymbolicLink(atPath: "\(root)/run/current-system", withDestinationPath: system)
        try fm.createSymbolicLink(atPath: "\(root)/run/booted-system", withDestinationPath: system)
        try write("etc/nixos/configuration.nix", "{ ... }: { networking.hostName = \"bench-node\"; }\n")
        try write("proc/sys/kernel/hostname", "bench-node\n")
        try write("proc/sys/kernel/osrelease", "6.6.30\n")
        try write("proc/sys/kernel/random/boot_id", UUID().uuidString.lowercased() + "\n")
        try write("proc/uptime", "1234.56 2000.00\n")
        try write("root/.nix-channels", "https://nixos.org/channels/nixos-24.05 nixos\n")
        try write("bin/systemctl", "#!/bin/sh\n[ \"$1\" = is-active ] && { echo inactive; exit 3; }\nexit 1\n", mode: 0o755)
    }

    func path(_ rel: String) -> String { "\(root)/\(rel)" }

    func write(_ rel: String, _ text: String, mode: Int = 0o644) throws {
        try SecureFiles.writeAtomically(text, to: path(rel), permissions: mode_t(mode))
    }

    func agentConfig(port: Int, signingKey: String) -> AgentConfig {
        var c = AgentConfig(
            nodeName: "bench-node",
            tls: .init(certFile: path("tls/agent.crt"), keyFile: path("tls/agent.key"), caFile: path("tls/ca.crt")),
            signingPublicKeys: [signingKey])
        c.listenAddress = "127.0.0.1"
        c.port = port
        c.stateDir = path("state")
        c.configDir = path("etc/nixos")
        c.kubeletHealthzURL = "http://127.0.0.1:1/healthz"
        c.commands.nixosRebuild = "/bin/false"
        c.commands.nixChannel = "/bin/false"
        c.commands.nixEnv = "/bin/false"
        c.commands.systemctl = path("bin/systemctl")
        c.paths.currentSystem = path("run/current-system")
        c.paths.bootedSystem = path("run/booted-system")
        c.paths.systemProfile = path("nix/var/nix/profiles/system")
        c.paths.channelsFile = path("root/.nix-channels")
        c.paths.channelsProfile = path("nix/var/nix/profiles/per-user/root/channels")
        c.paths.osrelease = path("proc/sys/kernel/osrelease")
        c.paths.bootID = path("proc/sys/kernel/random/boot_id")
        c.paths.uptime = path("proc/uptime")
        c.paths.hostname = path("proc/sys/kernel/hostname")
        return c
    }
}
