import Foundation
import NK3Agent
import NK3Protocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("ProcessRunner and NixOSSystem primitives", .serialized, .timeLimit(.minutes(2)))
struct BackendTests {
    @Test("captures combined output and the exit code; arguments are never shell-interpreted")
    func capture() async throws {
        let r = try await ProcessRunner().run("/bin/sh", ["-c", "echo out; echo err >&2; exit 7"])
        #expect(r.exitCode == 7)
        #expect(r.output.contains("out") && r.output.contains("err"))
        let evil = "$(touch /tmp/nk3-should-not-exist); `id`"
        let e = try await ProcessRunner().run("/bin/echo", [evil])
        #expect(e.output == evil + "\n")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/nk3-should-not-exist"))
    }

    @Test("timeout: SIGTERM, then SIGKILL to the whole process group (grandchildren too)")
    func timeoutTearsDownGroup() async throws {
        let dir = NSTemporaryDirectory() + "nk3-runner-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The child ignores SIGTERM (so SIGKILL is needed) and has a grandchild that records its pid.
        let script = "trap '' TERM; sleep 300 & echo $! > \(dir)/grandchild; wait"
        let started = ContinuousClock.now
        // The timeout leaves bash time to start its grandchild and record it even on a loaded machine (at 500 ms a
        // slow start would leave no grandchild file, and the test would fail for the wrong reason).
        let r = try await ProcessRunner(terminationGrace: .milliseconds(300)).run(
            "/bin/bash", ["-c", script], timeout: .seconds(3))
        #expect(r.timedOut)
        #expect(r.exitCode == 128 + SIGKILL || r.exitCode == 128 + SIGTERM)
        #expect(ContinuousClock.now - started < .seconds(20))
        let gpid = try #require(Int32((try String(contentsOfFile: "\(dir)/grandchild", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(await EngineKit.eventually("grandchild gone") { Self.gone(gpid) })
    }

    /// Dead, or a zombie waiting for a reaper (PID 1 in a container may never reap it).
    static func gone(_ pid: Int32) -> Bool {
        if kill(pid, 0) != 0 { return true }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true
    }

    @Test("task cancellation tears the child down")
    func cancellation() async throws {
        let task = Task { try await ProcessRunner(terminationGrace: .milliseconds(200)).run("/bin/sleep", ["300"]) }
        task.cancel()
        let r = try await task.value
        #expect(r.exitCode == 128 + SIGTERM)
    }

    @Test("a missing program is a clear spawn error")
    func missing() async throws {
        do {
            _ = try await ProcessRunner().run("/nonexistent/nixos-rebuild", [])
            Issue.record("expected an error")
        } catch let e as NodeSystemError {
            #expect(e.code == .processSpawn)
            #expect(e.message.contains("/nonexistent/nixos-rebuild"))
        }
    }

    @Test("long output is bounded: head and tail kept")
    func bounded() async throws {
        let r = try await ProcessRunner(outputLimit: 4096).run("/bin/sh", ["-c", "seq 1 100000"])
        #expect(r.output.hasPrefix("1\n2\n"))
        #expect(r.output.hasSuffix("100000\n"))
        #expect(r.output.contains("bytes of output omitted"))
        #expect(r.output.utf8.count < 8192)
    }

    @Test("replaceConfigFiles: whole-set replace; files nk3 never managed are left alone")
    func replaceSet() async throws {
        let fake = try EngineFakeRoot(recordManaged: false)
        try fake.write("etc/nixos/hardware-configuration.nix", "{ }: { hw = true; }\n")
        let system = fake.system()
        #expect(try await system.readConfigFiles().keys.sorted() == ["configuration.nix"], "fresh node: configuration.nix")
        try await system.replaceConfigFiles(with: ["configuration.nix": "a", "b.nix": "b"])
        #expect(try await system.readConfigFiles() == ["configuration.nix": "a", "b.nix": "b"])
        try await system.replaceConfigFiles(with: ["configuration.nix": "c"])
        #expect(try await system.readConfigFiles() == ["configuration.nix": "c"])
        #expect(fake.read("etc/nixos/b.nix") == nil, "dropped from the set → removed")
        #expect(fake.read("etc/nixos/hardware-configuration.nix") != nil, "never managed → untouched")
        await #expect(throws: NodeSystemError.self) { try await system.replaceConfigFiles(with: ["../evil": "x"]) }
    }

    @Test("generations and activation follow system-N-link (docs/UPSTREAM.md#generations)")
    func generationsAndActivate() async throws {
        let fake = try EngineFakeRoot()
        let system = fake.system()
        try fake.write("etc/nixos/configuration.nix", "# kernel: 6.7.0\n")
        let outcome = try await system.rebuild(.switch, upgrade: false) { _ in }
        #expect(outcome.exitCode == 0)
        #expect(outcome.derivationsToBuild == 3 && outcome.pathsToFetch == 2)
        var g = try await system.generations()
        #expect(g.profileGeneration == 2)
        #expect(g.kernels[2] == "6.7.0")
        #expect(g.generation(of: g.currentSystem) == 2)
        try await system.activate(generation: 1, mode: .switch)
        g = try await system.generations()
        #expect(g.profileGeneration == 1)
        #expect(g.generation(of: g.currentSystem) == 1)
        await #expect(throws: NodeSystemError.self) { try await system.activate(generation: 42, mode: .boot) }
    }

    @Test("snapshot: a name that is a directory is refused before anything changes")
    func snapshotRefusesDirectory() async throws {
        let fake = try EngineFakeRoot()
        try FileManager.default.createDirectory(atPath: fake.root + "/etc/nixos/cluster.nix", withIntermediateDirectories: true)
        await #expect(throws: NodeSystemError.self) {
            _ = try await fake.system().snapshotConfigFiles(touching: ["cluster.nix"])
        }
    }
}
