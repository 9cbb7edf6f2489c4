import Foundation
import Logging
import NK3Protocol
import Testing

@testable import NK3Coordinator

/// Bootstrap sends the agent's private key over ssh, so the node's host key must be authenticated first: by
/// the known_hosts file, by a key or fingerprint pinned in the inventory, or — only when asked — on first use.
/// A real OpenSSH server on 127.0.0.1 (`SSHDHarness`) with its own host key.
@Suite("nk3 bootstrap: ssh host key policy (real sshd on 127.0.0.1)", .serialized, .timeLimit(.minutes(3)))
struct BootstrapHostKeyTests {
    func target(pin: String? = nil) -> BootstrapTarget {
        BootstrapTarget(name: "n1", address: "127.0.0.1", sshHostKey: pin)
    }

    /// Nothing of the agent's reached the node: no TLS directory, /etc/nixos untouched.
    func nothingSent(_ h: SSHDHarness) -> Bool {
        !FileManager.default.fileExists(atPath: h.root + "/var/lib/nk3-agent/tls/agent.key")
            && (try? String(contentsOfFile: h.root + "/etc/nixos/configuration.nix", encoding: .utf8))
                == SSHDHarness.oldConfiguration
    }

    @Test("an unknown host key is refused before anything is sent (no trust-on-first-use by default)",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func unknownHostRefused() async throws {
        let h = try SSHDHarness(knownHostKey: false)
        defer { h.stop() }
        let (source, _, _) = try bootstrapTestMaterials()
        let error = await #expect(throws: BootstrapError.self) {
            try await bootstrapTestBootstrapper(h, source).bootstrap(target())
        }
        #expect(error?.code == .hostKey, "\(String(describing: error))")
        #expect(error?.message.contains("--trust-first-use") == true)
        #expect(nothingSent(h))
        #expect(h.rebuildLog.isEmpty)
        #expect((try String(contentsOfFile: h.knownHosts, encoding: .utf8)).isEmpty, "nothing recorded")
    }

    @Test("a known_hosts entry with another key for the host is refused, nothing sent",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func wrongKnownKeyRefused() async throws {
        let h = try SSHDHarness(knownHostKey: false)
        defer { h.stop() }
        let other = try SSHDHarness(knownHostKey: false)  // only for a second, different host key
        defer { other.stop() }
        try "[127.0.0.1]:\(h.port) \(other.hostPublicKey)\n".write(toFile: h.knownHosts, atomically: true, encoding: .utf8)
        let (source, _, _) = try bootstrapTestMaterials()
        var settingsTOFU = h.sshOptions()
        settingsTOFU.trustOnFirstUse = true  // even trust-on-first-use never accepts a CHANGED key
        let error = await #expect(throws: BootstrapError.self) {
            try await bootstrapTestBootstrapper(h, source, ssh: settingsTOFU).bootstrap(target())
        }
        #expect(error?.code == .hostKey)
        #expect(nothingSent(h))
    }

    @Test("trust-on-first-use, when asked for, accepts and records the key",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func trustOnFirstUse() async throws {
        let h = try SSHDHarness(knownHostKey: false)
        defer { h.stop() }
        var ssh = h.sshOptions()
        ssh.trustOnFirstUse = true
        let (source, _, _) = try bootstrapTestMaterials()
        let outcome = try await bootstrapTestBootstrapper(h, source, ssh: ssh).bootstrap(target())
        guard case .enrolled = outcome else { Issue.record("expected .enrolled, got \(outcome)"); return }
        #expect((try String(contentsOfFile: h.knownHosts, encoding: .utf8)).contains(h.hostPublicKey))
    }

    @Test("a public key pinned in the inventory is enough (empty known_hosts); a wrong pinned key is refused",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func pinnedPublicKey() async throws {
        let h = try SSHDHarness(knownHostKey: false)
        defer { h.stop() }
        let other = try SSHDHarness(knownHostKey: false)
        defer { other.stop() }
        let (source, _, _) = try bootstrapTestMaterials()

        let refused = await #expect(throws: BootstrapError.self) {
            try await bootstrapTestBootstrapper(h, source).bootstrap(target(pin: other.hostPublicKey + " root@other"))
        }
        #expect(refused?.code == .hostKey)
        #expect(nothingSent(h))

        let outcome = try await bootstrapTestBootstrapper(h, source).bootstrap(target(pin: h.hostPublicKey + " root@n1"))
        guard case .enrolled = outcome else { Issue.record("expected .enrolled, got \(outcome)"); return }
        #expect((try String(contentsOfFile: h.knownHosts, encoding: .utf8)).isEmpty, "the pin is not written to known_hosts")
    }

    @Test("a SHA256 fingerprint pinned in the inventory: the matching key is used; a wrong one refused before ssh",
          .enabled(if: SSHDHarness.available, SSHDHarness.skipReason))
    func pinnedFingerprint() async throws {
        let h = try SSHDHarness(knownHostKey: false)
        defer { h.stop() }
        let other = try SSHDHarness(knownHostKey: false)
        defer { other.stop() }
        let (source, _, _) = try bootstrapTestMaterials()
        let blob = String(h.hostPublicKey.split(separator: " ")[1])
        let fingerprint = try #require(SSHHostKeyPin.fingerprint(ofBlob: blob))
        // The same fingerprint ssh-keygen prints for the file (checks our computation against OpenSSH's).
        let printed = try await LocalProcess.runToCompletion("/usr/bin/ssh-keygen", ["-lf", h.dir + "/host_key.pub"])
        #expect(printed.stdout.contains(fingerprint), "\(printed.stdout) vs \(fingerprint)")

        let otherBlob = String(other.hostPublicKey.split(separator: " ")[1])
        let wrong = try #require(SSHHostKeyPin.fingerprint(ofBlob: otherBlob))
        let refused = await #expect(throws: BootstrapError.self) {
            try await bootstrapTestBootstrapper(h, source).bootstrap(target(pin: wrong))
        }
        #expect(refused?.code == .hostKey)
        #expect(refused?.message.contains(fingerprint) == true, "names what the node offered")
        #expect(nothingSent(h))

        let outcome = try await bootstrapTestBootstrapper(h, source).bootstrap(target(pin: fingerprint))
        guard case .enrolled = outcome else { Issue.record("expected .enrolled, got \(outcome)"); return }
    }

    @Test func pinParsing() throws {
        #expect(throws: BootstrapError.self) { try SSHHostKeyPin(parsing: "SHA256:not-a-digest", node: "n1") }
        #expect(throws: BootstrapError.self) { try SSHHostKeyPin(parsing: "hello", node: "n1") }
        let key = try SSHHostKeyPin(parsing: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl c", node: "n1")
        #expect(key == .publicKey(type: "ssh-ed25519", blob: "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"))
    }
}
