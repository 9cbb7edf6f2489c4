import Foundation
import Logging
import NK3Protocol
import NK3Simulation
import Testing

@testable import NK3Coordinator

/// Answers like an agent once the fake nixos-rebuild has "started" it (its marker file exists).
private struct MarkerProbe: BootstrapAgentProbe {
    let marker: String
    func probe(_ target: BootstrapTarget) async -> AgentProbeResult {
        FileManager.default.fileExists(atPath: marker)
            ? .answers("hostname \(target.name), simulated by the test's marker file")
            : .noAnswer("connection refused (no agent yet)")
    }
}

/// Real, fresh PKI per run (ClusterCA) and a rendered bundle shaped like the coordinator's.
func bootstrapTestMaterials(configuration: String = "{ imports = [ ./hardware-configuration.nix ./nk3-agent.nix ]; }\n")
    throws -> (ClosureMaterialSource, AgentTLSMaterial, [String: String])
{
    let ca = try ClusterCA.create(cluster: "bootstrap-test")
    let agent = try ca.issueAgent(hostname: "n1", addresses: ["127.0.0.1"])
    let tls = AgentTLSMaterial(
        certificatePEM: agent.certificatePEM, privateKeyPEM: agent.privateKeyPEM,
        caCertificatePEM: try ca.certificatePEM)
    let files = [
        "configuration.nix": configuration,
        "nk3-agent.nix": "{ imports = [ ./nk3-agent-module.nix ]; services.nk3-agent.enable = true; }\n",
        "nk3-agent-module.nix": "{ config, lib, pkgs, ... }: { }\n",
        // The renderer might include one: bootstrap must keep the machine's own instead.
        "hardware-configuration.nix": "# NOT the machine's: must never land\n",
    ]
    return (ClosureMaterialSource(tls: { _ in tls }, files: { _ in files }), tls, files)
}

func bootstrapTestBootstrapper(
    _ h: SSHDHarness, _ source: ClosureMaterialSource, probe: (any BootstrapAgentProbe)? = nil,
    key: String? = nil, ssh: SSHOptions? = nil, agentBinary: String? = nil, agentTimeout: Duration = .seconds(30),
    lines: LineSink = LineSink()
) -> NodeBootstrapper {
    var settings = BootstrapSettings(ssh: ssh ?? h.sshOptions(key: key))
    settings.agentBinary = agentBinary
    settings.remoteRoot = h.root
    settings.requireRoot = geteuid() == 0
    settings.agentTimeout = agentTimeout
    settings.stepTimeout = .seconds(60)
    settings.rebuildTimeout = .seconds(60)
    return NodeBootstrapper(
        settings: settings, materials: source, probe: probe ?? MarkerProbe(marker: h.agentMarker),
        logger: Logger(label: "test.bootstrap"), report: { lines.append($0) })
}

final class LineSink: @unchecked Sendable {  // guarded by the lock
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ s: String) { lock.withLock { storage.append(s) } }
    var lines: [String] { lock.withLock { storage } }
}

private func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
private func mode(_ path: String) -> Int? {
    (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
}
private func mtime(_ path: String) -> Date? {
    try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
}

@Suite("nk3 bootstrap against a real sshd on 127.0.0.1", .serialized, .timeLimit(.minutes(3)))
struct BootstrapSSHTests {
    let target = BootstrapTarget(name: "n1", address: "127.0.0.1")

    @Test("a fresh node is enrolled; a second run says so and changes nothing",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func enrolThenIdempotent() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let (source, tls, files) = try bootstrapTestMaterials()
        let lines = LineSink()

        let first = try await bootstrapTestBootstrapper(h, source, lines: lines).bootstrap(target)
        guard case .enrolled(_, let backup) = first else {
            Issue.record("expected .enrolled, got \(first)")
            return
        }

        // TLS files: exact content, 0600 files in 0700 directories.
        let tlsDir = h.root + "/var/lib/nk3-agent/tls"
        for (name, content) in tls.files {
            #expect(read(tlsDir + "/" + name) == content, "\(name) content")
            #expect(mode(tlsDir + "/" + name) == 0o600, "\(name) must be 0600")
        }
        #expect(mode(tlsDir) == 0o700)
        #expect(mode(h.root + "/var/lib/nk3-agent") == 0o700)
        // Configuration landed, the machine's hardware-configuration.nix kept, the old file backed up.
        #expect(read(h.root + "/etc/nixos/configuration.nix") == files["configuration.nix"])
        #expect(read(h.root + "/etc/nixos/nk3-agent.nix") == files["nk3-agent.nix"])
        #expect(read(h.root + "/etc/nixos/nk3-agent-module.nix") == files["nk3-agent-module.nix"])
        #expect(read(h.root + "/etc/nixos/hardware-configuration.nix") == SSHDHarness.hardwareConfiguration)
        #expect(mode(h.root + "/etc/nixos/configuration.nix") == 0o644)
        let backupDir = try #require(backup)
        #expect(read(backupDir + "/configuration.nix") == SSHDHarness.oldConfiguration)
        // The agent's record of the files nk3 manages: bootstrap's three, not the machine's own.
        #expect(
            read(h.root + "/var/lib/nk3-agent/managed-files.json")
                == #"["configuration.nix","nk3-agent-module.nix","nk3-agent.nix"]"#)
        #expect(mode(h.root + "/var/lib/nk3-agent/managed-files.json") == 0o600)
        // No staging leftovers, one rebuild, the host key held to the known_hosts entry.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: h.root + "/var/lib/nk3-agent")
            .filter { $0.hasPrefix(".bootstrap.") }
        #expect(leftovers.isEmpty)
        #expect(h.rebuildLog == ["switch"])
        #expect((read(h.knownHosts) ?? "").contains("127.0.0.1"))
        #expect(lines.lines.contains { $0.contains("enrolled") })

        // Second run: the agent answers, so nothing at all is done.
        let keyTime = mtime(tlsDir + "/agent.key")
        let cfgTime = mtime(h.root + "/etc/nixos/configuration.nix")
        let second = try await bootstrapTestBootstrapper(h, source, lines: lines).bootstrap(target)
        guard case .alreadyEnrolled = second else {
            Issue.record("expected .alreadyEnrolled, got \(second)")
            return
        }
        #expect(h.rebuildLog == ["switch"], "no second rebuild")
        #expect(mtime(tlsDir + "/agent.key") == keyTime)
        #expect(mtime(h.root + "/etc/nixos/configuration.nix") == cfgTime)
        #expect(lines.lines.last?.contains("already enrolled, nothing changed") == true)
    }

    @Test("files already in place but the agent is down: no re-landing, only the rebuild runs again",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func rerunWithFilesInPlace() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let (source, _, _) = try bootstrapTestMaterials()
        _ = try await bootstrapTestBootstrapper(h, source).bootstrap(target)
        try FileManager.default.removeItem(atPath: h.agentMarker)  // the agent "went away"
        let backups = try FileManager.default.contentsOfDirectory(atPath: h.root + "/var/lib/nk3-agent/bootstrap-backup")
        let keyTime = mtime(h.root + "/var/lib/nk3-agent/tls/agent.key")

        let again = try await bootstrapTestBootstrapper(h, source).bootstrap(target)
        guard case .enrolled(_, let backup) = again else {
            Issue.record("expected .enrolled, got \(again)")
            return
        }
        #expect(backup == nil, "nothing re-landed, so no new backup")
        #expect(try FileManager.default.contentsOfDirectory(atPath: h.root + "/var/lib/nk3-agent/bootstrap-backup") == backups)
        #expect(mtime(h.root + "/var/lib/nk3-agent/tls/agent.key") == keyTime)
        #expect(h.rebuildLog == ["switch", "switch"])
    }

    @Test("a rebuild that fails to evaluate puts the previous /etc/nixos back",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func failedRebuildRestores() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let (source, _, _) = try bootstrapTestMaterials(configuration: "# NK3_TEST_FAIL_EVAL\n{ imports = [ ./hardware-configuration.nix ]; }\n")
        let error = await #expect(throws: BootstrapError.self) { try await bootstrapTestBootstrapper(h, source).bootstrap(target) }
        #expect(error?.code == .rebuildFailed)
        #expect(error?.message.contains("undefined variable") == true, "the rebuild's own error is shown")
        #expect(error?.message.contains("did not move") == true)
        #expect(read(h.root + "/etc/nixos/configuration.nix") == SSHDHarness.oldConfiguration)
        #expect(!FileManager.default.fileExists(atPath: h.root + "/etc/nixos/nk3-agent.nix"), "files that were new are removed")
        #expect(read(h.root + "/etc/nixos/hardware-configuration.nix") == SSHDHarness.hardwareConfiguration)
        #expect(!FileManager.default.fileExists(atPath: h.root + "/var/lib/nk3-agent/managed-files.json"), "record as before: none")
    }

    @Test("a failed activation that moved the system profile is reported with the fix (docs/UPSTREAM.md#nixos-rebuild)",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func failedActivationReportsProfile() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let (source, _, _) = try bootstrapTestMaterials(configuration: "# NK3_TEST_FAIL_ACTIVATION\n{ }\n")
        let error = await #expect(throws: BootstrapError.self) { try await bootstrapTestBootstrapper(h, source).bootstrap(target) }
        #expect(error?.code == .rebuildFailed)
        #expect(error?.message.contains("exited with status 4") == true)
        #expect(error?.message.contains("system-1-link to system-2-link") == true)
        #expect(error?.message.contains("nixos-rebuild switch --rollback") == true)
        #expect(read(h.root + "/etc/nixos/configuration.nix") == SSHDHarness.oldConfiguration)
    }

    @Test("a machine that is not NixOS is refused and nothing is written",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func refusesNonNixOS() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        try FileManager.default.removeItem(atPath: h.root + "/etc/NIXOS")
        let (source, _, _) = try bootstrapTestMaterials()
        let error = await #expect(throws: BootstrapError.self) { try await bootstrapTestBootstrapper(h, source).bootstrap(target) }
        #expect(error?.code == .notNixOS)
        #expect(!FileManager.default.fileExists(atPath: h.root + "/var/lib/nk3-agent"))
        #expect(read(h.root + "/etc/nixos/configuration.nix") == SSHDHarness.oldConfiguration)
        #expect(h.rebuildLog.isEmpty)
    }

    @Test("no hardware-configuration.nix on the node while the configuration imports it: refused, nothing written",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func missingHardwareConfiguration() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        try FileManager.default.removeItem(atPath: h.root + "/etc/nixos/hardware-configuration.nix")
        let (source, _, _) = try bootstrapTestMaterials()
        let error = await #expect(throws: BootstrapError.self) { try await bootstrapTestBootstrapper(h, source).bootstrap(target) }
        #expect(error?.code == .missingHardwareConfiguration)
        #expect(error?.message.contains("nixos-generate-config") == true)
        #expect(!FileManager.default.fileExists(atPath: h.root + "/var/lib/nk3-agent"))
    }

    @Test("a key sshd does not accept fails as an ssh error (BatchMode: no prompt)",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func wrongKey() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let otherKey = h.dir + "/other_key"
        try SSHDHarness.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", otherKey])
        let (source, _, _) = try bootstrapTestMaterials()
        let error = await #expect(throws: BootstrapError.self) {
            try await bootstrapTestBootstrapper(h, source, key: otherKey).bootstrap(target)
        }
        #expect(error?.code == .sshFailed)
        #expect(error?.message.contains("Permission denied") == true)
        #expect(!FileManager.default.fileExists(atPath: h.root + "/var/lib/nk3-agent"))
    }

    @Test("the rebuild succeeds but the agent never answers: a timeout error that says where to look",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func agentNeverAnswers() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        struct Silent: BootstrapAgentProbe {
            func probe(_ target: BootstrapTarget) async -> AgentProbeResult { .noAnswer("connection refused") }
        }
        let (source, _, _) = try bootstrapTestMaterials()
        let error = await #expect(throws: BootstrapError.self) {
            try await bootstrapTestBootstrapper(h, source, probe: Silent(), agentTimeout: .milliseconds(300)).bootstrap(target)
        }
        #expect(error?.code == .agentTimeout)
        #expect(error?.message.contains("journalctl -u nk3-agent") == true)
        #expect(error?.message.contains("connection refused") == true)
        #expect(h.rebuildLog == ["switch"])
    }
}

@Suite("nk3 bootstrap wired to a real PKI and inventory", .serialized, .timeLimit(.minutes(3)))
struct BootstrapSessionTests {
    @Test("the session's PKI issues the agent certificate once and the rendered bundle lands as is",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func sessionMaterials() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let pki = PKIStore(directory: h.dir + "/pki")
        try pki.initialize(cluster: "bootstrap-test")
        try """
            { config, pkgs, ... }:
            { imports = [ ./hardware-configuration.nix ./nk3-agent.nix ]; networking.hostName = "{{ node.name }}"; }

            """.write(toFile: h.dir + "/configuration.nix.j2", atomically: true, encoding: .utf8)
        try """
            join_address: 127.0.0.1
            join_token: t
            nix_channel: nixos-25.11
            pki_dir: \(h.dir)/pki
            template: \(h.dir)/configuration.nix.j2
            nodes:
              127.0.0.1:
                hostname: n1

            """.write(toFile: h.dir + "/inventory.yaml", atomically: true, encoding: .utf8)
        let session = try ClusterSession.load(inventoryPath: h.dir + "/inventory.yaml", logger: Logger(label: "test"))
        let target = try #require(session.bootstrapTarget("n1"))
        #expect(target == BootstrapTarget(name: "n1", address: "127.0.0.1", agentPort: 7443))
        #expect(session.bootstrapTarget("127.0.0.1") == target, "an address names the node too")

        let materials = SessionBootstrapMaterials(session: session)
        let outcome = try await bootstrapTestBootstrapper(h, ClosureMaterialSource(
            tls: { try await materials.tlsMaterial(for: $0) },
            files: { try await materials.configurationFiles(for: $0) })).bootstrap(target)
        guard case .enrolled = outcome else {
            Issue.record("expected .enrolled, got \(outcome)")
            return
        }
        // The certificate was issued into the PKI (SAN includes the address) and that very file landed.
        let issued = try String(contentsOfFile: pki.agentFiles(node: "n1").certificatePath, encoding: .utf8)
        #expect(read(h.root + "/var/lib/nk3-agent/tls/agent.crt") == issued)
        #expect(read(h.root + "/var/lib/nk3-agent/tls/ca.crt") == (try String(contentsOfFile: pki.caCertificatePath, encoding: .utf8)))
        // Issued once: asking again returns the same certificate (a re-run ships identical files).
        #expect(try await materials.tlsMaterial(for: target).certificatePEM == issued)
        // The bundle is the renderer's: template output, generated nk3-agent.nix, the embedded module.
        #expect(read(h.root + "/etc/nixos/configuration.nix")?.contains("networking.hostName = \"n1\"") == true)
        let agentNix = try #require(read(h.root + "/etc/nixos/nk3-agent.nix"))
        #expect(agentNix.contains(try pki.signingPublicKey()))
        #expect(agentNix.contains("/var/lib/nk3-agent/tls/agent.key"))
        #expect(read(h.root + "/etc/nixos/nk3-agent-module.nix") == NixAgentModule.source)
    }
}

@Suite("bootstrap remote scripts (pure)")
struct BootstrapScriptTests {
    @Test func quotingSurvivesSingleQuotes() {
        #expect(RemoteScripts.quote("a'b") == "'a'\\''b'")
        #expect(RemoteScripts.quote("") == "''")
    }

    @Test func fileNamesAreRestricted() {
        #expect(RemoteScripts.isSafeFileName("configuration.nix"))
        #expect(RemoteScripts.isSafeFileName("nk3-agent_module.nix"))
        for bad in ["", "../x.nix", "a/b.nix", ".hidden", "-rf", "a b.nix", "x;rm"] {
            #expect(!RemoteScripts.isSafeFileName(bad), "\(bad)")
        }
    }

    @Test func preflightOutputParses() throws {
        let facts = try #require(RemoteFacts(preflightOutput: """
            uid=0
            nixos=yes
            hardware=no
            rebuild=yes
            profile=system-7-link
            tls.agent.key=abc123 600
            config.configuration.nix=def456
            preflight=done
            """))
        #expect(facts.uid == 0 && facts.isNixOS && !facts.hasHardwareConfiguration && facts.hasNixosRebuild)
        #expect(facts.systemProfile == "system-7-link")
        #expect(facts.tlsFiles["agent.key"] == RemoteFileInfo(sha256: "abc123", mode: "600"))
        #expect(facts.configFiles == ["configuration.nix": "def456"])
        #expect(RemoteFacts(preflightOutput: "uid=0\nnixos=yes\n") == nil, "a preflight cut short is not trusted")
    }

    @Test func remoteRootIsNormalised() {
        #expect(RemoteScripts(root: "/").root == "")
        #expect(RemoteScripts(root: "/tmp/x/").root == "/tmp/x")
    }
}

@Suite("LocalProcess: the ssh runner's children")
struct LocalProcessDescriptorTests {
    @Test("an ssh child gets stdin, stdout and stderr and none of nk3's other descriptors (a listening socket opened without CLOEXEC, as NIO opens its sockets, stays out)")
    func childGetsOnlyStandardStreams() throws {
        let listener = try LoopbackSockets.bind(listen: 1)  // socket(2) without SOCK_CLOEXEC, like NIO's
        defer { close(listener.fd) }
        // posix_spawn returns once the child has exec'd, so its descriptor table is final when we look.
        let pid = try LocalProcess.spawn("/bin/sleep", ["30"], stdin: "/dev/null", stdout: "/dev/null", stderr: "/dev/null")
        defer {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
        #expect(fds == [0, 1, 2], "the child holds \(fds)")
    }
}
