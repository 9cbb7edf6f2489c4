import Foundation
import NK3Simulation
import Testing

/// `nk3 status --watch` on a pseudo-terminal: the table is redrawn in place (cursor home, clear screen) until
/// SIGINT, which ends it with exit 0. The one node's agent is not running (a free loopback port): its row says
/// unreachable, which is what the table shows for it; no other traffic leaves 127.0.0.1.
@Suite("nk3 status --watch on a pseudo-terminal", .serialized, .timeLimit(.minutes(2)))
struct StatusWatchPTYTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: LiveProgressPTYTests.script), "util-linux `script` is not installed (bsdutils)"))
    func watchRedrawsInPlaceUntilInterrupted() async throws {
        let nk3 = try #require(LiveProgressPTYTests.nk3Binary, "build nk3 first (swift build)")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-watch-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try LoopbackSockets.freePort()
        try """
            join_address: 127.0.0.1
            join_token: t
            nix_channel: nixos-24.05
            state_version: "24.05"
            nodes:
              127.0.0.1: {agent_port: \(port), boot_device: /dev/sda}
            """.write(toFile: dir + "/inventory.yaml", atomically: true, encoding: .utf8)
        #expect(try await LiveProgressPTYTests.run([nk3, "certs", "init", "-i", dir + "/inventory.yaml"], output: dir + "/certs.log") == 0)

        let out = dir + "/typescript"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let script = Process()
        script.executableURL = URL(fileURLWithPath: LiveProgressPTYTests.script)
        // `exec`: `script -c` runs the command with $SHELL, or /bin/sh where SHELL is unset (as under CI). dash does not
        // replace itself with a lone command, so without `exec` the SIGINT below would reach the shell, not nk3.
        script.arguments = ["-qfec", "exec \(nk3) status --watch --interval 0.2 --no-kube -i \(dir)/inventory.yaml", "/dev/null"]
        script.standardOutput = FileHandle(forWritingAtPath: out)
        script.standardError = FileHandle.nullDevice
        script.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["TERM"] = "xterm"
        env["SHELL"] = "/bin/sh"
        script.environment = env
        try script.run()
        // Whatever happens below, nothing is left running: the pty's processes are killed (nk3 first, then script).
        defer { if script.isRunning { Self.killTree(script.processIdentifier) } }

        func text() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        func redraws() -> Int { text().components(separatedBy: "\u{1B}[H\u{1B}[2J").count - 1 }
        let start = ContinuousClock.now
        while redraws() < 3 && ContinuousClock.now - start < .seconds(60) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(redraws() >= 3, "\(text().suffix(2000))")
        #expect(text().contains("REACHABLE"), "\(text().suffix(1000))")

        // Interrupt nk3 itself (the child of `script`), as Ctrl-C on the terminal would.
        let child = try #require(Self.children(of: script.processIdentifier).first, "no child of script")
        #expect(Self.command(of: child).hasSuffix("nk3"), "script's child is nk3 itself, not a shell: \(Self.command(of: child))")
        kill(child, SIGINT)
        let stop = ContinuousClock.now
        while script.isRunning && ContinuousClock.now - stop < .seconds(20) { try await Task.sleep(for: .milliseconds(20)) }
        // Never an unbounded wait: a test left waiting on a process that does not end stalls the whole run.
        try #require(!script.isRunning, "status --watch still running 20 s after SIGINT: \(text().suffix(1000))")
        script.waitUntilExit()
        #expect(script.terminationStatus == 0, "status --watch exits 0 on SIGINT: \(text().suffix(1000))")
    }

    static func children(of pid: Int32) -> [Int32] {
        let list = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return list.split(separator: " ").compactMap { Int32($0) }
    }

    static func command(of pid: Int32) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
    }

    /// SIGKILL to `pid` and every process below it, deepest first.
    static func killTree(_ pid: Int32) {
        for child in children(of: pid) { killTree(child) }
        kill(pid, SIGKILL)
    }
}
