#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a finished child process left behind.
public struct ProcessResult: Sendable, Hashable {
    /// Exit status; 128+N if the child died of signal N.
    public var exitCode: Int32
    /// Combined stdout+stderr. If longer than the runner's limit, head and tail are kept with a marker between.
    public var output: String
    /// The runner tore the process group down because the timeout passed.
    public var timedOut: Bool
}

/// Runs one program (no shell, arguments passed as an argv array) in its own process group, capturing
/// combined output, with a timeout and a SIGTERM → wait → SIGKILL teardown of the whole group on timeout or
/// task cancellation (like swift-subprocess's `TeardownStep`).
public struct ProcessRunner: Sendable {
    /// Time between SIGTERM and SIGKILL on teardown.
    public var terminationGrace: Duration
    /// Bytes of output kept (half head, half tail).
    public var outputLimit: Int

    /// Creates a runner.
    public init(terminationGrace: Duration = .seconds(5), outputLimit: Int = 512 * 1024) {
        self.terminationGrace = terminationGrace
        self.outputLimit = outputLimit
    }

    /// Runs `executable` (a path, or a name looked up in PATH) with `arguments`.
    /// - Parameters:
    ///   - environment: full environment for the child; nil inherits the agent's.
    ///   - timeout: tear the process group down after this long; nil waits forever (or until cancelled).
    ///   - onLine: called with each complete output line (without the newline), on a background thread.
    public func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        timeout: Duration? = nil, onLine: (@Sendable (String) -> Void)? = nil
    ) async throws -> ProcessResult {
        let child = try ChildProcess.spawn(
            executable: executable, arguments: arguments, environment: environment, outputLimit: outputLimit,
            onLine: onLine)
        let grace = terminationGrace
        let timer: Task<Void, Never>? = timeout.map { limit in
            Task {
                do { try await Task.sleep(for: limit) } catch { return }
                child.markTimedOut()
                await child.teardown(grace: grace)
            }
        }
        defer { timer?.cancel() }
        return await withTaskCancellationHandler {
            await child.wait()
        } onCancel: {
            Task { await child.teardown(grace: grace) }
        }
    }
}

/// One spawned child: its pid (= process group id), a reader thread, and its reaping state.
///
/// Sendable without `@unchecked`: its only stored properties are the immutable pid and a `Mutex`; the pipe's fd
/// is never stored here, it lives in the reader thread's closure.
private final class ChildProcess: Sendable {
    struct State {
        var exited = false
        var timedOut = false
        var result: ProcessResult?
        var waiters: [CheckedContinuation<ProcessResult, Never>] = []
    }

    let pid: pid_t
    let state = Mutex(State())

    private init(pid: pid_t) { self.pid = pid }

    static func spawn(
        executable: String, arguments: [String], environment: [String: String]?, outputLimit: Int,
        onLine: (@Sendable (String) -> Void)?
    ) throws -> ChildProcess {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw NodeSystemError(.processSpawn, "cannot create a pipe for \(executable): \(errnoText())")
        }
        // Close-on-exec for both ends: the dup2'd copies in the child are what it keeps.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        // Nothing else of the agent's (sockets, state files, fds a parent leaked without CLOEXEC) reaches the
        // child. glibc ≥ 2.34 has closefrom as a spawn action; it is not imported into Swift, so look it up.
        SpawnFileActions.closeFrom(3, in: &actions)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Own process group (so teardown reaches grandchildren), empty signal mask, and default dispositions
        // for the signals a service runtime may have set to ignored (ignored signals survive exec).
        posix_spawnattr_setpgroup(&attr, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(
            &attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let env = environment ?? ProcessInfo.processInfo.environment
        let argvStrings = [executable] + arguments
        let envStrings = env.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStringArray(argvStrings) { argv in
            withCStringArray(envStrings) { envp in
                posix_spawnp(&pid, executable, &actions, &attr, argv, envp)
            }
        }
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw NodeSystemError(
                .processSpawn,
                "cannot run '\(executable)': \(String(cString: strerror(rc))); check the command path in the agent config")
        }
        let child = ChildProcess(pid: pid)
        let readFD = fds[0]
        DetachedThread.start(name: "nk3-proc-\(pid)") {
            child.pump(fd: readFD, outputLimit: outputLimit, onLine: onLine)
        }
        return child
    }

    func markTimedOut() { state.withLock { $0.timedOut = true } }

    /// Sends `signal` to the process group, unless the leader has been reaped (its pid may be reused).
    func signalGroup(_ signal: Int32) {
        state.withLock { s in
            if !s.exited { _ = kill(-pid, signal) }
        }
    }

    func teardown(grace: Duration) async {
        signalGroup(SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if state.withLock({ $0.exited }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        signalGroup(SIGKILL)
    }

    func wait() async -> ProcessResult {
        await withCheckedContinuation { (c: CheckedContinuation<ProcessResult, Never>) in
            let done: ProcessResult? = state.withLock { s in
                if let r = s.result { return r }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    /// Reader thread: drain output until EOF, reap the child, publish the result.
    private func pump(fd: Int32, outputLimit: Int, onLine: (@Sendable (String) -> Void)?) {
        var output = BoundedOutput(limit: outputLimit)
        var partial: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var leaderExitedAt: ContinuousClock.Instant?
        var exitStatus: Int32?
        readLoop: while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 200)
            if ready > 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65536) }
                if n > 0 {
                    let chunk = buffer[0..<n]
                    output.append(chunk)
                    if let onLine {
                        partial.append(contentsOf: chunk)
                        while let nl = partial.firstIndex(of: 10) {
                            onLine(String(decoding: partial[..<nl], as: UTF8.self))
                            partial.removeSubrange(...nl)
                        }
                    }
                    continue
                }
                if n == 0 { break readLoop }
                if errno == EINTR || errno == EAGAIN { continue }
                break readLoop
            }
            // Quiet pipe: has the leader exited while a stray descendant keeps the pipe open?
            if exitStatus == nil, let st = reapIfExited(block: false) {
                exitStatus = st
                leaderExitedAt = .now
                // Strays in the group would keep the pipe open forever; the leader is gone, so stop them.
                _ = kill(-pid, SIGKILL)
            }
            if let at = leaderExitedAt, ContinuousClock.now - at > .seconds(2) { break readLoop }
        }
        close(fd)
        if let onLine, !partial.isEmpty { onLine(String(decoding: partial, as: UTF8.self)) }
        let status = exitStatus ?? reapIfExited(block: true) ?? -1
        let (result, waiters): (ProcessResult, [CheckedContinuation<ProcessResult, Never>]) = state.withLock { s in
            let r = ProcessResult(exitCode: status, output: output.text, timedOut: s.timedOut)
            s.result = r
            let w = s.waiters
            s.waiters = []
            return (r, w)
        }
        for w in waiters { w.resume(returning: result) }
    }

    /// Reaps the leader if it has exited; marks it exited under the lock in the same step, so `signalGroup`
    /// never signals a recycled pid. With `block`, retries until it has exited.
    private func reapIfExited(block: Bool) -> Int32? {
        var status: Int32 = 0
        while true {
            let reaped: Bool = state.withLock { s in
                var r: pid_t
                repeat { r = waitpid(pid, &status, WNOHANG) } while r < 0 && errno == EINTR
                if r == pid || r < 0 { s.exited = true }
                return r == pid || r < 0
            }
            if reaped { break }
            if !block { return nil }
            usleep(5_000)
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG by hand (the macros are not imported into Swift).
        let termSignal = status & 0x7f
        if termSignal == 0 { return (status >> 8) & 0xff }
        return 128 + termSignal
    }
}

/// Keeps the first and last `limit/2` bytes of a stream.
private struct BoundedOutput {
    let half: Int
    var head: [UInt8] = []
    var tail: [UInt8] = []
    var dropped = 0

    init(limit: Int) { half = max(1024, limit / 2) }

    mutating func append(_ bytes: ArraySlice<UInt8>) {
        var rest = bytes[...]
        if head.count < half {
            let take = min(half - head.count, rest.count)
            head.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
        }
        if rest.isEmpty { return }
        tail.append(contentsOf: rest)
        if tail.count > 2 * half {
            let cut = tail.count - half
            dropped += cut
            tail.removeFirst(cut)
        }
    }

    var text: String {
        var all = head
        if dropped > 0 { all.append(contentsOf: Array("\n… [\(dropped) bytes of output omitted] …\n".utf8)) }
        all.append(contentsOf: tail.count > half && dropped > 0 ? Array(tail.suffix(half)) : tail)
        return String(decoding: all, as: UTF8.self)
    }
}

private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var cStrings: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    cStrings.append(nil)
    defer { for p in cStrings { free(p) } }
    return cStrings.withUnsafeBufferPointer { body($0.baseAddress!) }
}

func errnoText() -> String { String(cString: strerror(errno)) }
