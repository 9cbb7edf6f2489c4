import Foundation
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
    /// known_hosts file (`UserKnownHostsFile`); nil uses ssh's default. New hosts are accepted and recorded
    /// (`StrictHostKeyChecking=accept-new`); a CHANGED host key is refused.
    public var knownHostsFile: String?
    /// ssh_config file (`-F`); nil reads the user's ~/.ssh/config as usual.
    public var configFile: String?
    /// Seconds to wait for the TCP connection.
    public var connectTimeoutSeconds: Int = 10
    /// The `ssh` program.
    public var sshCommand: String = "ssh"
    /// The `scp` program.
    public var scpCommand: String = "scp"
    /// Further `-o Key=Value` options.
    public var extraOptions: [String] = []

    /// Defaults: root on port 22, ssh's default key and known_hosts.
    public init() {}

    /// `-o` options shared by ssh and scp. BatchMode: never prompt (no passwords, no host-key questions).
    var commonOptions: [String] {
        var o = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "ConnectTimeout=\(connectTimeoutSeconds)",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
        ]
        if let configFile { o = ["-F", configFile] + o }
        if let knownHostsFile { o += ["-o", "UserKnownHostsFile=\(knownHostsFile)"] }
        if let identityFile { o += ["-i", identityFile, "-o", "IdentitiesOnly=yes"] }
        for extra in extraOptions { o += ["-o", extra] }
        return o
    }
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

    /// Runs `script` with `sh -s` on the node (the script travels on stdin, so nothing needs quoting for a
    /// remote shell). Throws only if ssh could not be started; the exit status is in the result
    /// (255 = ssh's own failure: connection, authentication, host key).
    func runScript(_ script: String, on host: String, timeout: Duration) async throws -> LocalProcessResult {
        let scratch = try LocalScratch()
        defer { scratch.remove() }
        let scriptFile = try scratch.write("script.sh", script, permissions: 0o600)
        let args = ["-p", String(options.port)] + options.commonOptions + ["\(options.user)@\(host)", "sh -s"]
        return try await LocalProcess.run(options.sshCommand, args, stdinFile: scriptFile, timeout: timeout)
    }

    /// Copies local files into an existing remote directory with scp (SFTP protocol on current OpenSSH).
    func copy(_ localFiles: [String], to remoteDirectory: String, on host: String, timeout: Duration) async throws
        -> LocalProcessResult
    {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let args =
            ["-q", "-P", String(options.port)] + options.commonOptions + localFiles
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
enum LocalProcess {
    /// Holds a `Process` across the timeout task. `@unchecked Sendable`: only `terminate()` and `isRunning`
    /// are called from the timer, and Foundation documents both as safe from any thread.
    private final class Box: @unchecked Sendable {
        let process: Process
        init(_ p: Process) { process = p }
    }

    /// Set by the timer when it had to terminate the child.
    private final class TimeoutFlag: Sendable {
        let fired = Mutex(false)
    }

    static func run(_ executable: String, _ arguments: [String], stdinFile: String?, timeout: Duration) async throws
        -> LocalProcessResult
    {
        let scratch = try LocalScratch()
        defer { scratch.remove() }
        let outPath = scratch.path + "/stdout"
        let errPath = scratch.path + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        guard let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath),
            let input = FileHandle(forReadingAtPath: stdinFile ?? "/dev/null")
        else {
            throw BootstrapError(.local, node: "-", "cannot open temporary files for \(executable)")
        }
        defer {
            try? out.close()
            try? err.close()
            try? input.close()
        }

        let process = Process()
        if executable.contains("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        let box = Box(process)
        let flag = TimeoutFlag()
        // ssh's ConnectTimeout bounds the connection; this bounds the whole command (e.g. a rebuild that hangs).
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }
            if box.process.isRunning {
                flag.fired.withLock { $0 = true }
                box.process.terminate()
            }
        }
        defer { timer.cancel() }

        let exitCode: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { p in continuation.resume(returning: p.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(
                    throwing: BootstrapError(
                        .sshFailed, node: "-", "cannot run \(executable): \(error.localizedDescription)"))
            }
        }
        return LocalProcessResult(
            exitCode: exitCode,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            timedOut: flag.fired.withLock { $0 })
    }
}
