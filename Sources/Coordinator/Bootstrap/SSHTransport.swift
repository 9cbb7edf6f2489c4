import Foundation
import NK3Common
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How to reach nodes with the system OpenSSH client (`ssh`, `scp`).
public struct SSHOptions: Sendable, Hashable {
    /// Remote user; bootstrap needs root (it runs nixos-rebuild and writes /etc/nixos).
    public var user: String = "root"
    /// sshd port on the node.
    public var port: Int = 22
    /// Private key (`-i`, like the Python tool's `--private-key`); nil uses ssh's defaults and agent.
    public var identityFile: String?
    /// known_hosts file (`UserKnownHostsFile`); nil uses ssh's default (`~/.ssh/known_hosts`). The node's host
    /// key must be in it (`StrictHostKeyChecking=yes`) unless the node's key is pinned (`BootstrapTarget
    /// .sshHostKey`) or `trustOnFirstUse` is on.
    public var knownHostsFile: String?
    /// Trust-on-first-use, an explicit opt-in: a host not in the known_hosts file is accepted and its key
    /// recorded there (`StrictHostKeyChecking=accept-new`). Off by default: bootstrap sends the agent's private
    /// key over this connection, so the first connection must already be authenticated. A CHANGED key is
    /// refused either way.
    public var trustOnFirstUse = false
    /// ssh_config file (`-F`); nil reads the user's ~/.ssh/config as usual.
    public var configFile: String?
    /// Seconds to wait for the TCP connection.
    public var connectTimeoutSeconds: Int = 10
    /// The `ssh` program.
    public var sshCommand: String = "ssh"
    /// The `scp` program.
    public var scpCommand: String = "scp"
    /// The `ssh-keyscan` program (asks a node for its host keys when the inventory pins a fingerprint).
    public var keyscanCommand: String = "ssh-keyscan"
    /// Further `-o Key=Value` options.
    public var extraOptions: [String] = []

    /// Defaults: root on port 22, ssh's default key and known_hosts.
    public init() {}

    /// `-o` options shared by ssh and scp. BatchMode: never prompt (no passwords, no host-key questions).
    /// `pinnedKnownHosts`: a known_hosts file holding only the node's pinned key under the alias `hostKeyAlias`;
    /// when given, it is the only file consulted and the key must match it.
    func commonOptions(pinnedKnownHosts: String? = nil) -> [String] {
        var o = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=\(pinnedKnownHosts == nil && trustOnFirstUse ? "accept-new" : "yes")",
            "-o", "ConnectTimeout=\(connectTimeoutSeconds)",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
        ]
        if let configFile { o = ["-F", configFile] + o }
        if let pinnedKnownHosts {
            o += [
                "-o", "UserKnownHostsFile=\(pinnedKnownHosts)", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "HostKeyAlias=\(Self.hostKeyAlias)",
            ]
        } else if let knownHostsFile {
            o += ["-o", "UserKnownHostsFile=\(knownHostsFile)"]
        }
        if let identityFile { o += ["-i", identityFile, "-o", "IdentitiesOnly=yes"] }
        for extra in extraOptions { o += ["-o", extra] }
        return o
    }
}

extension SSHOptions {
    /// The name a pinned key is filed under in the one-entry known_hosts file (`HostKeyAlias`).
    static let hostKeyAlias = "nk3-pinned-host"
}

/// What a finished local process left behind.
struct LocalProcessResult: Sendable {
    var exitCode: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

/// Runs `ssh`/`scp` as child processes. Output goes to temporary files (no pipe can fill up and stall the
/// child), stdin comes from a file or /dev/null.
struct SSHTransport: Sendable {
    var options: SSHOptions
    /// A known_hosts file with the node's pinned key only (see `SSHHostKeyPin`); nil: `options` decide.
    var pinnedKnownHosts: String?

    /// Runs `script` with `sh -s` on the node (the script travels on stdin, so nothing needs quoting for a
    /// remote shell). Throws only if ssh could not be started; the exit status is in the result
    /// (255 = ssh's own failure: connection, authentication, host key).
    func runScript(_ script: String, on host: String, timeout: Duration) async throws -> LocalProcessResult {
        let scratch = try LocalScratch()
        defer { scratch.remove() }
        let scriptFile = try scratch.write("script.sh", script, permissions: 0o600)
        let args =
            ["-p", String(options.port)] + options.commonOptions(pinnedKnownHosts: pinnedKnownHosts)
            + ["\(options.user)@\(host)", "sh -s"]
        return try await LocalProcess.run(options.sshCommand, args, stdinFile: scriptFile, timeout: timeout)
    }

    /// Copies local files into an existing remote directory with scp (SFTP protocol on current OpenSSH).
    func copy(_ localFiles: [String], to remoteDirectory: String, on host: String, timeout: Duration) async throws
        -> LocalProcessResult
    {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let args =
            ["-q", "-P", String(options.port)] + options.commonOptions(pinnedKnownHosts: pinnedKnownHosts) + localFiles
            + ["\(options.user)@\(hostPart):\(remoteDirectory)/"]
        return try await LocalProcess.run(options.scpCommand, args, stdinFile: nil, timeout: timeout)
    }
}

/// A private (0700) local temporary directory for staging files before they are copied.
struct LocalScratch {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/nk3-bootstrap.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw BootstrapError(.local, node: "-", "cannot create a temporary directory: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    /// Writes a file created with `permissions` (never wider, whatever the umask).
    func write(_ name: String, _ content: String, permissions: mode_t) throws -> String {
        let file = path + "/" + name
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, permissions)
        guard fd >= 0 else {
            throw BootstrapError(.local, node: "-", "cannot create \(file): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        _ = fchmod(fd, permissions)
        let bytes = Array(content.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BootstrapError(.local, node: "-", "cannot write \(file): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
        return file
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Minimal child-process runner for ssh/scp (the coordinator does not link the agent's runner).
///
/// posix_spawn + a blocking `waitpid` on a dedicated thread, rather than Foundation's `Process`, whose
/// termination handler was seen never to fire for a child started from a Swift-concurrency thread on Linux
/// (the child stayed a zombie and the caller waited forever).
enum LocalProcess {
    /// Set once the child has been reaped: after that its pid may be reused and must not be signalled.
    private final class ChildState: Sendable {
        let pid: pid_t
        let state = Mutex<(exited: Bool, timedOut: Bool)>((false, false))
        init(pid: pid_t) { self.pid = pid }

        func killIfRunning(_ signal: Int32, markTimedOut: Bool) {
            state.withLock { s in
                guard !s.exited else { return }
                if markTimedOut { s.timedOut = true }
                _ = kill(pid, signal)
            }
        }
    }

    static func run(_ executable: String, _ arguments: [String], stdinFile: String?, timeout: Duration) async throws
        -> LocalProcessResult
    {
        let scratch = try LocalScratch()
        defer { scratch.remove() }
        let outPath = scratch.path + "/stdout"
        let errPath = scratch.path + "/stderr"
        let pid = try spawn(
            executable, arguments, stdin: stdinFile ?? "/dev/null", stdout: outPath, stderr: errPath)
        let child = ChildState(pid: pid)
        // ssh's ConnectTimeout bounds the connection; this bounds the whole command (e.g. a rebuild that hangs).
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }
            child.killIfRunning(SIGTERM, markTimedOut: true)
            do { try await Task.sleep(for: .seconds(5)) } catch { return }
            child.killIfRunning(SIGKILL, markTimedOut: true)
        }
        defer { timer.cancel() }
        let status = await waitForExit(child)
        return LocalProcessResult(
            exitCode: status,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            timedOut: child.state.withLock { $0.timedOut })
    }

    /// Starts `executable` (a path, or a name looked up in PATH) with its streams redirected to files.
    static func spawn(_ executable: String, _ arguments: [String], stdin: String, stdout: String, stderr: String)
        throws -> pid_t
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // Nothing else of ours reaches ssh: NIO's sockets (agent connections, the Kubernetes API) are not CLOEXEC.
        SpawnFileActions.closeFrom(3, in: &actions)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Default dispositions and an empty mask: a parent that ignores SIGPIPE/SIGTERM must not pass that on.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let env = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in env { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, executable, &actions, &attr, argv, env)
        guard rc == 0 else {
            throw BootstrapError(
                .sshFailed, node: "-", "cannot run \(executable): \(String(cString: strerror(rc))); is it installed?")
        }
        return pid
    }

    /// Waits for the child on a dedicated thread (a blocking waitpid must not sit on the concurrency pool).
    private static func waitForExit(_ child: ChildState) async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let thread = Thread {
                var status: Int32 = 0
                var rc: pid_t
                repeat { rc = waitpid(child.pid, &status, 0) } while rc < 0 && errno == EINTR
                child.state.withLock { $0.exited = true }
                continuation.resume(returning: Self.exitCode(rc < 0 ? 127 << 8 : status))
            }
            thread.name = "nk3-ssh-\(child.pid)"
            thread.start()
        }
    }

    /// Exit status, or 128+N for death by signal N (as a shell reports it).
    static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Runs a program to completion (for small local helpers).
    static func runToCompletion(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(60))
        async throws -> LocalProcessResult
    {
        try await run(executable, arguments, stdinFile: nil, timeout: timeout)
    }
}
