import Foundation
import Logging
import NK3Protocol
import Testing

@testable import NK3Coordinator

/// What bootstrap places besides the TLS files and /etc/nixos: the agent binary, the k3s join token, and the
/// machine's `system.stateVersion` carried into the first configuration. A real sshd on 127.0.0.1.
@Suite("nk3 bootstrap: agent binary, k3s token, stateVersion (real sshd on 127.0.0.1)", .serialized, .timeLimit(.minutes(3)))
struct BootstrapPlacementTests {
    let target = BootstrapTarget(name: "n1", address: "127.0.0.1")

    func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
    func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
    }

    /// A stand-in "binary": an ELF header and some bytes that are not UTF-8 (copied byte-exact).
    func fakeAgent(_ dir: String, debug: Bool = false) throws -> String {
        var bytes: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0xff, 0xfe, 0x00, 0x80]
        if debug { bytes += Array("NK3_AGENT_TEST_KILL_AT".utf8) }
        let path = dir + "/nk3-agent-release"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// One PKI per test: a re-run must ship the same certificate to find everything in place.
    let base: (source: ClosureMaterialSource, files: [String: String])

    init() throws {
        let (source, _, files) = try bootstrapTestMaterials()
        base = (source, files)
    }

    func bootstrapper(_ h: SSHDHarness, token: String?, binary: String?, files: [String: String]? = nil,
                      seen: StateVersionSink? = nil) throws -> NodeBootstrapper {
        let (base, baseFiles) = self.base
        let source = ClosureMaterialSource(
            tls: { try await base.tlsMaterial(for: $0) },
            files: { t in
                seen?.set(t.machineStateVersion)
                return files ?? baseFiles
            },
            token: { _ in token })
        return bootstrapTestBootstrapper(h, source, probe: MarkerFileProbe(marker: h.agentMarker), agentBinary: binary)
    }

    @Test("the agent binary lands byte-exact 0755 and the k3s token 0600 root-only; a re-run with both in place re-lands nothing",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func binaryAndToken() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let binary = try fakeAgent(h.dir)
        let outcome = try await bootstrapper(h, token: "K10abc::server:secret", binary: binary).bootstrap(target)
        guard case .enrolled(_, let backup) = outcome else { Issue.record("expected .enrolled, got \(outcome)"); return }
        #expect(backup != nil)
        let landed = h.root + PlacedFile.agentBinaryPath
        #expect(FileManager.default.contents(atPath: landed) == FileManager.default.contents(atPath: binary))
        #expect(mode(landed) == 0o755)
        #expect(text(h.root + PlacedFile.k3sTokenPath) == "K10abc::server:secret")
        #expect(mode(h.root + PlacedFile.k3sTokenPath) == 0o600)
        #expect(mode(h.root + "/etc/nk3") == 0o755)
        #expect(mode(h.root + "/var/lib/nk3-agent") == 0o700, "the binary's directory sits in the private state dir")

        // The agent is "down" (marker removed): the files are all in place, so only the rebuild runs again.
        try FileManager.default.removeItem(atPath: h.agentMarker)
        let again = try await bootstrapper(h, token: "K10abc::server:secret", binary: binary).bootstrap(target)
        guard case .enrolled(_, let backup2) = again else { Issue.record("expected .enrolled, got \(again)"); return }
        #expect(backup2 == nil, "nothing re-landed")

        // A new token is placed on the next run.
        try FileManager.default.removeItem(atPath: h.agentMarker)
        _ = try await bootstrapper(h, token: "K10new::server:other", binary: binary).bootstrap(target)
        #expect(text(h.root + PlacedFile.k3sTokenPath) == "K10new::server:other")
    }

    @Test("a debug nk3-agent (with test kill points) is refused before anything is sent",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func debugBinaryRefused() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let binary = try fakeAgent(h.dir, debug: true)
        let error = await #expect(throws: BootstrapError.self) {
            try await bootstrapper(h, token: nil, binary: binary).bootstrap(target)
        }
        #expect(error?.code == .materials)
        #expect(error?.message.contains("debug build") == true)
        #expect(!FileManager.default.fileExists(atPath: h.root + "/var/lib/nk3-agent/tls/agent.key"))
        #expect(h.rebuildLog.isEmpty)
    }

    @Test("the machine's system.stateVersion is read before rendering (commented lines ignored)",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func stateVersionRead() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        try """
            { ... }: {
              imports = [ ./hardware-configuration.nix ];
              # system.stateVersion = "99.99";
              system.stateVersion = "23.11"; # Did you read the comment?
            }

            """.write(toFile: h.root + "/etc/nixos/configuration.nix", atomically: true, encoding: .utf8)
        let seen = StateVersionSink()
        _ = try await bootstrapper(h, token: nil, binary: nil, seen: seen).bootstrap(target)
        #expect(seen.value == "23.11")
    }

    @Test("inventory state_version: injected from the machine when absent, refused when it disagrees",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func sessionStateVersion() async throws {
        let h = try SSHDHarness()
        defer { h.stop() }
        let pki = PKIStore(directory: h.dir + "/pki")
        try pki.initialize(cluster: "bootstrap-test")
        try """
            { ... }: { imports = [ ./hardware-configuration.nix ./nk3-agent.nix ]; system.stateVersion = "{{ hostvars.state_version }}"; }

            """.write(toFile: h.dir + "/configuration.nix.j2", atomically: true, encoding: .utf8)
        func inventory(_ hostvar: String) throws -> ClusterSession {
            try """
                join_address: 127.0.0.1
                join_token: K10tok::server:s
                nix_channel: nixos-25.11
                pki_dir: \(h.dir)/pki
                template: \(h.dir)/configuration.nix.j2
                nodes:
                  127.0.0.1:
                    hostname: n1
                \(hostvar)

                """.write(toFile: h.dir + "/inventory.yaml", atomically: true, encoding: .utf8)
            return try ClusterSession.load(inventoryPath: h.dir + "/inventory.yaml", logger: Logger(label: "test"))
        }
        var machine = target
        machine.machineStateVersion = "23.11"

        let absent = SessionBootstrapMaterials(session: try inventory(""))
        let files = try await absent.configurationFiles(for: machine)
        #expect(files["configuration.nix"]?.contains("system.stateVersion = \"23.11\"") == true)
        #expect(try await absent.k3sToken(for: machine) == "K10tok::server:s")

        let agreeing = SessionBootstrapMaterials(session: try inventory("    state_version: \"23.11\""))
        #expect(try await agreeing.configurationFiles(for: machine)["configuration.nix"]?.contains("\"23.11\"") == true)

        let wrong = SessionBootstrapMaterials(session: try inventory("    state_version: \"24.05\""))
        let error = await #expect(throws: BootstrapError.self) { try await wrong.configurationFiles(for: machine) }
        #expect(error?.message.contains("system.stateVersion = \"23.11\"") == true)
    }
}

/// Records the state version the materials were asked with.
final class StateVersionSink: @unchecked Sendable {  // guarded by the lock
    private let lock = NSLock()
    private var stored: String?
    func set(_ v: String?) { lock.withLock { stored = v } }
    var value: String? { lock.withLock { stored } }
}

/// Answers like an agent once the fake nixos-rebuild has created its marker file.
struct MarkerFileProbe: BootstrapAgentProbe {
    let marker: String
    func probe(_ target: BootstrapTarget) async -> AgentProbeResult {
        FileManager.default.fileExists(atPath: marker) ? .answers("marker") : .noAnswer("connection refused")
    }
}
