import Foundation
import NK3Simulation
@testable import NK3Coordinator
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real OpenSSH server (Debian's openssh-server) on 127.0.0.1 and an ephemeral port, for bootstrap tests.
///
/// Everything lives in a temporary directory: a test-only host key, a test-only user key (the only authorized
/// key), a fake node root (`root`, used as the bootstrapper's remote root) and a `bin` directory that sshd puts
/// first on the session PATH (`SetEnv PATH=…`), holding a fake `nixos-rebuild`. Root login is allowed with
/// that key only (`PermitRootLogin prohibit-password`), and no PAM, so nothing of the machine's own sshd
/// setup is used or changed. The only shared thing it touches is /run/sshd, sshd's privilege-separation
/// directory, which it creates (empty, 0755) when running as root and missing — as the Debian package's
/// service unit would.
final class SSHDHarness: @unchecked Sendable {  // mutable only in init/stop, called from one test at a time
    static let sshdPath: String? = ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static let sftpServer: String? = [
        "/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server",
    ].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var available: Bool {
        sshdPath != nil && sftpServer != nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
    }
    static let skipReason: Comment =
        "sshd not installed: apt-get install -y openssh-server openssh-client (CI's .ci/run installs them)"

    let dir: String
    let root: String
    let bin: String
    let port: Int
    let userKey: String
    let knownHosts: String
    let user: String
    private var sshdPID: pid_t?

    /// Lines the fake nixos-rebuild appended (one per run, its arguments).
    var rebuildLog: [String] {
        ((try? String(contentsOfFile: dir + "/rebuild.log", encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }
    /// The marker the fake nixos-rebuild creates on success ("the agent is up").
    var agentMarker: String { dir + "/agent-up" }

    /// The host key's public half as sshd offers it (`ssh-ed25519 AAAA…`).
    var hostPublicKey: String {
        let text = (try? String(contentsOfFile: dir + "/host_key.pub", encoding: .utf8)) ?? ""
        return text.split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// - Parameter knownHostKey: write the server's host key into `knownHosts` (as an operator would after
    ///   checking it); false leaves the file empty, an unknown host.
    init(knownHostKey: Bool = true) throws {
        var template = Array((NSTemporaryDirectory() + "/nk3-sshd.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        dir = String(cString: made)
        root = dir + "/root"
        bin = dir + "/bin"
        userKey = dir + "/user_key"
        knownHosts = dir + "/known_hosts"
        user = String(cString: getpwuid(geteuid())!.pointee.pw_name)

        try Self.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", dir + "/host_key"])
        try Self.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", userKey])
        try FileManager.default.copyItem(atPath: userKey + ".pub", toPath: dir + "/authorized_keys")
        chmod(dir + "/authorized_keys", 0o600)

        try Self.makeFakeNode(root: root)
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try Self.writeExecutable(bin + "/nixos-rebuild", Self.fakeRebuild(root: root, dir: dir))

        if geteuid() == 0 && !FileManager.default.fileExists(atPath: "/run/sshd") {
            try FileManager.default.createDirectory(
                atPath: "/run/sshd", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }

        var lastError = "sshd did not start"
        for _ in 0..<5 {
            let candidate = try LoopbackSockets.freePort()  // sshd binds it next, retried on a race
            let config = dir + "/sshd_config"
            try Self.sshdConfig(dir: dir, bin: bin, port: candidate).write(toFile: config, atomically: true, encoding: .utf8)
            let pid = try LocalProcess.spawn(
                Self.sshdPath!, ["-D", "-e", "-f", config], stdin: "/dev/null", stdout: "/dev/null",
                stderr: dir + "/sshd.log")
            if Self.waitForListener(port: candidate, pid: pid) {
                sshdPID = pid
                port = candidate
                let line = knownHostKey ? "[127.0.0.1]:\(candidate) \(hostPublicKey)\n" : ""
                try line.write(toFile: knownHosts, atomically: true, encoding: .utf8)
                return
            }
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            lastError = (try? String(contentsOfFile: dir + "/sshd.log", encoding: .utf8)) ?? lastError
        }
        throw HarnessError("sshd did not start: \(lastError)")
    }

    /// ssh options for the bootstrapper: this harness's key, port and known_hosts; no user ssh_config.
    func sshOptions(key: String? = nil) -> SSHOptions {
        var o = SSHOptions()
        o.user = user
        o.port = port
        o.identityFile = key ?? userKey
        o.knownHostsFile = knownHosts
        o.configFile = "/dev/null"
        o.connectTimeoutSeconds = 10
        return o
    }

    func stop() {
        if let pid = sshdPID {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        sshdPID = nil
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: fake node

    static let oldConfiguration = "# the installer's configuration.nix\n{ imports = [ ./hardware-configuration.nix ]; }\n"
    static let hardwareConfiguration = "# generated by nixos-generate-config\n{ fileSystems.\"/\".device = \"/dev/vda1\"; }\n"

    private static func makeFakeNode(root: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/etc/nixos", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/nix/var/nix/profiles", withIntermediateDirectories: true)
        try "".write(toFile: root + "/etc/NIXOS", atomically: true, encoding: .utf8)
        try oldConfiguration.write(toFile: root + "/etc/nixos/configuration.nix", atomically: true, encoding: .utf8)
        try hardwareConfiguration.write(
            toFile: root + "/etc/nixos/hardware-configuration.nix", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root + "/nix/var/nix/profiles/system", withDestinationPath: "system-1-link")
    }

    /// The fake nixos-rebuild: logs its arguments; fails like an evaluation error if configuration.nix contains
    /// NK3_TEST_FAIL_EVAL; moves the system profile and then fails like a failed activation (exit 4, the code
    /// switch-to-configuration uses for failed units, docs/UPSTREAM.md#nixos-rebuild) if it contains
    /// NK3_TEST_FAIL_ACTIVATION; otherwise "starts the agent" by creating the marker.
    private static func fakeRebuild(root: String, dir: String) -> String {
        """
        #!/bin/sh
        ROOT=\(RemoteScripts.quote(root))
        echo "$*" >> \(RemoteScripts.quote(dir + "/rebuild.log"))
        echo "building the system configuration..." >&2
        if grep -q NK3_TEST_FAIL_EVAL "$ROOT/etc/nixos/configuration.nix"; then
          echo "error: undefined variable 'nk3TestFailEval' at /etc/nixos/configuration.nix:3:5" >&2
          exit 1
        fi
        if grep -q NK3_TEST_FAIL_ACTIVATION "$ROOT/etc/nixos/configuration.nix"; then
          ln -sfn system-2-link "$ROOT/nix/var/nix/profiles/system"
          echo "warning: the following units failed: k3s.service" >&2
          exit 4
        fi
        touch \(RemoteScripts.quote(dir + "/agent-up"))
        exit 0

        """
    }

    private static func sshdConfig(dir: String, bin: String, port: Int) -> String {
        """
        Port \(port)
        ListenAddress 127.0.0.1
        HostKey \(dir)/host_key
        PidFile none
        AuthorizedKeysFile \(dir)/authorized_keys
        PermitRootLogin prohibit-password
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        Subsystem sftp \(sftpServer!)
        SetEnv PATH=\(bin):/usr/bin:/bin

        """
    }

    // MARK: plumbing

    static func run(_ exe: String, _ args: [String]) throws {
        let pid = try LocalProcess.spawn(exe, args, stdin: "/dev/null", stdout: "/dev/null", stderr: "/dev/null")
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = LocalProcess.exitCode(status)
        guard code == 0 else { throw HarnessError("\(exe) \(args) exited \(code)") }
    }

    private static func writeExecutable(_ path: String, _ content: String) throws {
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }

    /// Polls a TCP connect to the port until it succeeds, sshd exits, or 15 s pass (generous for a loaded box).
    private static func waitForListener(port: Int, pid: pid_t) -> Bool {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return false }  // sshd exited (e.g. port taken)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(port).bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            close(fd)
            if rc == 0 { return true }
            usleep(20_000)
        }
        return false
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
