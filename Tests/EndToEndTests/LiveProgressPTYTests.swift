import Foundation
import Testing

/// `nk3 demo` (three simulated nodes) on a pseudo-terminal (util-linux `script`, which gives the child a pty and copies what it
/// writes): the live view is drawn and redrawn in place, and ends with every node done. The same demo on a pipe
/// prints plain lines without escape codes. (The demo's cluster is simulated; the coordinator code is real.)
@Suite("Live progress on a pseudo-terminal", .serialized, .timeLimit(.minutes(4)))
struct LiveProgressPTYTests {
    static var nk3Binary: String? {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidates = [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("nk3").path }
        candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/nk3")
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static let script = "/usr/bin/script"

    /// Runs `argv` with its output in `file`; returns the exit status.
    /// Runs `argv` to its end on a thread of its own: the wait blocks, and a blocked thread of Swift's
    /// cooperative pool (two on a two-core machine) stalls every other test's tasks meanwhile (a CI run saw the fake
    /// API's clients time out while a demo ran here).
    static func run(_ argv: [String], output file: String, environment: [String: String] = [:]) async throws -> Int32 {
        try await withCheckedThrowingContinuation { cont in
            Thread.detachNewThread {
                cont.resume(with: Result { try runBlocking(argv, output: file, environment: environment) })
            }
        }
    }

    private static func runBlocking(_ argv: [String], output file: String, environment: [String: String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        p.environment = env
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: file)
        p.standardError = FileHandle(forWritingAtPath: file + ".err")
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: script), "util-linux `script` is not installed (bsdutils)"))
    func demoOnAPTYRedrawsTheLiveViewInPlace() async throws {
        let nk3 = try #require(Self.nk3Binary, "build nk3 first (swift build)")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-pty-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + ".typescript"
        defer { try? FileManager.default.removeItem(atPath: out) }
        // script -q (no banner) -f (flush) -e (the child's exit status) -c CMD, output to stdout.
        let command = "\(nk3) demo --no-upgrade --dir \(dir)"
        let status = try await Self.run([Self.script, "-qfec", command, "/dev/null"], output: out, environment: ["TERM": "xterm", "COLUMNS": "120"])
        let text = try String(contentsOfFile: out, encoding: .utf8)
        #expect(status == 0, "\(text.suffix(3000))")
        // The block is drawn (reverse video) and redrawn in place: cursor up over it, clear to the end of screen.
        #expect(text.contains("\u{1B}[7mnk3: 0/3 nodes done"))
        let redraws = text.components(separatedBy: "A\u{1B}[J").count - 1
        #expect(redraws >= 10, "\(redraws) in-place redraws")
        #expect(text.contains("\u{1B}[7mnk3: 3/3 nodes done"), "the last block shows every node done")
        #expect(text.contains(" rebuild ") || text.contains(" drain ") || text.contains(" reboot "), "in-flight phases shown")
        // The demo says where its report is.
        #expect(text.contains("[simulation] report of the simulated apply"))
    }
}
