import Foundation
import NK3Common

#if canImport(Glibc)
import Glibc
#endif

/// Process and resource helpers for the benchmarks: spawn with posix_spawn, reap with `wait4` (per-child
/// rusage), read /proc. Linux only (the targets are for this machine).
enum BenchProcess {
    /// A child's exit and its own resource usage (from `wait4`).
    struct Exit: Sendable {
        var status: Int32
        /// User + system CPU seconds of the child.
        var cpuSeconds: Double
        /// Peak resident set of the child, in KiB (`ru_maxrss`).
        var maxRSSKiB: Int
    }

    /// Spawns `path args…` with stdout and stderr redirected to files (or /dev/null). Returns the pid.
    static func spawn(_ path: String, _ args: [String], stdout: String = "/dev/null", stderr: String = "/dev/null") throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // The child must not inherit this process's sockets: an `nk3 apply` child holding a simulated agent's
        // listening socket kept that agent from binding its port again after its reboot.
        SpawnFileActions.closeFrom(3, in: &actions)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = argv.withUnsafeBufferPointer { buf in
            posix_spawn(&pid, path, &actions, nil, UnsafeMutablePointer(mutating: buf.baseAddress!), environ)
        }
        guard rc == 0 else { throw BenchError("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Waits for `pid` and returns its exit status and resource usage (blocking; call off the cooperative pool
    /// for long waits).
    static func wait(_ pid: pid_t) -> Exit {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let exited = (status & 0x7f) == 0
        return Exit(
            status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), cpuSeconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            maxRSSKiB: Int(usage.ru_maxrss))
    }

    /// Runs to completion on a dedicated thread (so the blocking `wait4` does not hold a Swift concurrency thread).
    static func run(_ path: String, _ args: [String], stdout: String = "/dev/null", stderr: String = "/dev/null") async throws -> Exit {
        let pid = try spawn(path, args, stdout: stdout, stderr: stderr)
        return await withCheckedContinuation { (c: CheckedContinuation<Exit, Never>) in
            Thread.detachNewThread { c.resume(returning: wait(pid)) }
        }
    }

    /// CPU seconds (user + system) of this process so far.
    static func selfCPUSeconds() -> Double {
        var u = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &u)
        return seconds(u.ru_utime) + seconds(u.ru_stime)
    }

    /// Peak resident set of this process so far, in KiB (`ru_maxrss` of `RUSAGE_SELF`).
    static func selfPeakRSSKiB() -> Int {
        var u = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &u)
        return Int(u.ru_maxrss)
    }

    static func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1_000_000 }

    /// The first executable named `name` on PATH.
    static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// VmRSS of `pid` in KiB, from /proc/PID/status.
    static func rssKiB(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
        return nil
    }

    /// From /proc/PID/smaps_rollup: (anonymous KiB, file-backed KiB) of the resident set — heap and stacks
    /// versus mapped code and libraries.
    static func rssSplitKiB(_ pid: pid_t) -> (anonymous: Int, file: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return nil }
        var fields: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let v = Int(parts[1]) { fields[String(parts[0].dropLast())] = v }
        }
        guard let rss = fields["Rss"], let anon = fields["Anonymous"] else { return nil }
        return (anon, rss - anon)
    }

    /// utime + stime of `pid` in seconds, from /proc/PID/stat (fields 14 and 15, in clock ticks).
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)" start at field 3 (state).
        let rest = text[text.index(after: close)...].split(separator: " ")
        guard rest.count > 13, let u = Double(rest[11]), let s = Double(rest[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// A benchmark could not run: what failed and what to check.
public struct BenchError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    /// Makes an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Wall-clock helpers.
extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}
