import Crypto
import Foundation
import Logging
import NK3Agent
import NK3Protocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the engine, kill-matrix and status tests.
enum EngineKit {
    static let logger = Logger(label: "engine-test")

    static func engine(_ fake: EngineFakeRoot, clock: ManualAgentClock, unit: String = "k3s") throws -> ApplyEngine {
        try ApplyEngine(
            system: fake.system(), stateDir: fake.stateDir, k3sUnit: unit, clock: clock, rebootDelay: .zero,
            logger: logger)
    }

    static func payload(_ command: Command, serial: UInt64, now: Date = Date()) -> CommandPayload {
        CommandPayload(
            node: "node1", serial: serial, issuedAt: now, expiresAt: now.addingTimeInterval(300), command: command)
    }

    static func apply(
        _ files: [String: String], _ action: RebuildAction = .switch, upgrade: Bool = false, channel: String? = nil,
        timeout: Int = 600, serial: UInt64
    ) -> CommandPayload {
        payload(
            .apply(
                ApplyBundle(
                    files: files, action: action, upgrade: upgrade, nixChannel: channel,
                    confirmTimeoutSeconds: timeout)),
            serial: serial)
    }

    /// A new set of files: configuration.nix changed, k3s.nix dropped, two files added.
    static func newFiles(kernel: String = "6.6.9", extra: String = "") -> [String: String] {
        [
            "configuration.nix": "{ ... }: {\n  # kernel: \(kernel)\n  # version: 24.05.2\n  imports = [ ./cluster.nix ];\(extra)\n}\n",
            "cluster.nix": "{ ... }: { services.k3s.enable = true; services.k3s.role = \"server\"; }\n",
            "nk3-node.json": "{\"node\":\"node1\"}\n",
        ]
    }

    /// Expects `handle` to refuse with `code`.
    static func expectRefusal(
        _ engine: ApplyEngine, _ payload: CommandPayload, _ code: WireError.Code,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            let r = try await engine.handle(payload)
            Issue.record("expected \(code.rawValue), got receipt \(r)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        }
    }

    /// Polls `condition` until true or `timeout` (generous: a loaded 2-core machine).
    static func eventually(
        timeout: Duration = .seconds(30), _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async -> Bool
    ) async -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
        return false
    }

    // MARK: the real nk3-agent binary

    static var agentBinary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("nk3-agent").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        let cwd = FileManager.default.currentDirectoryPath + "/.build/debug/nk3-agent"
        return cwd
    }

    /// Signs commands and writes the agent config for `run-once` runs of the binary.
    struct AgentProcess {
        let fake: EngineFakeRoot
        let signer = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        let configPath: String

        init(fake: EngineFakeRoot, trialBoot: TrialBootLoader? = nil) throws {
            self.fake = fake
            configPath = fake.root + "/agent.json"
            let key = signer.privateKey.publicKey.rawRepresentation.base64EncodedString()
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            try enc.encode(fake.agentConfig(signingKey: key, trialBoot: trialBoot))
                .write(to: URL(fileURLWithPath: configPath))
        }

        /// Starts `nk3-agent run-once` with `command` signed, optionally with the SIGKILL hook at `killAt`.
        func start(_ command: Command?, serial: UInt64, killAt: String? = nil) throws -> Process {
            var args = ["run-once", "--config", configPath, "--log-level", "debug"]
            if let command {
                let env = try signer.sign(command, node: "node1", serial: serial, now: Date())
                let path = fake.root + "/envelope-\(serial).json"
                try JSONEncoder().encode(env).write(to: URL(fileURLWithPath: path))
                args += ["--envelope", path]
            }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: EngineKit.agentBinary)
            p.arguments = args
            var environment = ProcessInfo.processInfo.environment
            environment["NK3_AGENT_TEST_KILL_AT"] = killAt
            p.environment = environment
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            let log = fake.root + "/agent-\(serial)-\(UUID().uuidString.prefix(6)).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardError = FileHandle(forWritingAtPath: log)
            try p.run()
            return p
        }

        /// Runs to the end; returns (exit status, killed by SIGKILL).
        func run(_ command: Command?, serial: UInt64, killAt: String? = nil) async throws -> (Int32, Bool) {
            let p = try start(command, serial: serial, killAt: killAt)
            await EngineKit.waitForExit(p)
            guard !p.isRunning else { return (-1, false) }
            return (p.terminationStatus, p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL)
        }
    }

    static func waitForExit(_ p: Process) async {
        _ = await eventually(timeout: .seconds(60), "nk3-agent to exit") { !p.isRunning }
    }
}

/// A one-route HTTP server on 127.0.0.1 standing in for the kubelet's healthz (k3s-io/k3s
/// pkg/daemons/agent/agent_linux.go).
final class EngineHealthzServer: @unchecked Sendable {
    // @unchecked: `fd` and `port` are set once in init; the accept thread only reads them.
    let fd: Int32
    let port: UInt16

    init(body: String = "ok", status: Int = 200) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw NSError(domain: "healthz", code: 1) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        port = UInt16(bigEndian: addr.sin_port)
        let listener = fd
        let response = Array("HTTP/1.0 \(status) X\r\nContent-Type: text/plain\r\n\r\n\(body)".utf8)
        Thread.detachNewThread {
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                var buf = [UInt8](repeating: 0, count: 2048)
                _ = recv(c, &buf, 2048, 0)
                _ = response.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(c)
            }
        }
    }

    var url: String { "http://127.0.0.1:\(port)/healthz" }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
