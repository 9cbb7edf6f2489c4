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
        script.arguments = ["-qfec", "\(nk3) status --watch --interval 0.2 --no-kube -i \(dir)/inventory.yaml", "/dev/null"]
        script.standardOutput = FileHandle(forWritingAtPath: out)
        script.standardError = FileHandle.nullDevice
        script.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["TERM"] = "xterm"
        script.environment = env
        try script.run()
        defer { if script.isRunning { script.terminate() } }

        func text() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        func redraws() -> Int { text().components(separatedBy: "\u{1B}[H\u{1B}[2J").count - 1 }
        let start = ContinuousClock.now
        while redraws() < 3 && ContinuousClock.now - start < .seconds(60) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(redraws() >= 3, "\(text().suffix(2000))")
        #expect(text().contains("REACHABLE"), "\(text().suffix(1000))")

        // Interrupt nk3 itself (the child of `script`), as Ctrl-C on the terminal would.
        let children = (try? String(contentsOfFile: "/proc/\(script.processIdentifier)/task/\(script.processIdentifier)/children", encoding: .utf8)) ?? ""
        let child = try #require(children.split(separator: " ").first.flatMap { Int32($0) }, "no child of script")
        kill(child, SIGINT)
        let stop = ContinuousClock.now
        while script.isRunning && ContinuousClock.now - stop < .seconds(20) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!script.isRunning)
        script.waitUntilExit()
        #expect(script.terminationStatus == 0, "status --watch exits 0 on SIGINT: \(text().suffix(1000))")
    }
}
