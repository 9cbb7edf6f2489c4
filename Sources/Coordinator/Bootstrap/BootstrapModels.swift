import Foundation

/// A fresh NixOS machine to enrol: reachable by ssh at `address`, and later by its agent at `address:agentPort`.
public struct BootstrapTarget: Sendable, Hashable, CustomStringConvertible {
    /// The node's name (hostname in the inventory; the agent's certificate carries it).
    public var name: String
    /// IP address or DNS name used for ssh and for the agent.
    public var address: String
    /// The agent's mTLS port (inventory `agent_port`, default 7443).
    public var agentPort: Int
    /// The node's pinned ssh host key or its fingerprint (inventory hostvar `ssh_host_key`, see `SSHHostKeyPin`);
    /// nil: the known_hosts file must hold it (or trust-on-first-use was chosen).
    public var sshHostKey: String?
    /// The `system.stateVersion` bootstrap found in the machine's /etc/nixos (set by bootstrap after its
    /// read-only preflight, before the configuration is rendered); nil if none was found or not looked yet.
    public var machineStateVersion: String?

    /// Makes a target.
    public init(name: String, address: String, agentPort: Int = 7443, sshHostKey: String? = nil) {
        self.name = name
        self.address = address
        self.agentPort = agentPort
        self.sshHostKey = sshHostKey
    }

    public var description: String { name == address ? name : "\(name) (\(address))" }
}

/// The agent's TLS files as PEM text: its server certificate and key, and the cluster CA certificate.
public struct AgentTLSMaterial: Sendable, Hashable {
    /// The agent's server certificate (SANs: hostname and address).
    public var certificatePEM: String
    /// The agent's private key. Lands on the node as a 0600 file, never in the Nix store.
    public var privateKeyPEM: String
    /// The cluster CA certificate client certificates must chain to.
    public var caCertificatePEM: String

    /// Makes the material.
    public init(certificatePEM: String, privateKeyPEM: String, caCertificatePEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.caCertificatePEM = caCertificatePEM
    }

    /// File name under the node's TLS directory → content. The names match the paths the generated
    /// nk3-agent.nix gives the module (`/var/lib/nk3-agent/tls/{agent.crt,agent.key,ca.crt}`).
    public var files: [String: String] {
        ["agent.crt": certificatePEM, "agent.key": privateKeyPEM, "ca.crt": caCertificatePEM]
    }
}

/// How one node's bootstrap ended.
public enum BootstrapOutcome: Sendable, Hashable {
    /// The agent already answered over mTLS before anything was done: nothing was changed.
    case alreadyEnrolled(agentSummary: String)
    /// The node was enrolled by this run: files landed, `nixos-rebuild switch` ran, the agent answers.
    case enrolled(agentSummary: String, backupDirectory: String?)
}

/// Why bootstrapping a node failed. Match on `code`, never on the message.
public struct BootstrapError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable, Hashable {
        /// Bad input from the caller (node name, rendered files, options).
        case invalidInput = "invalid_input"
        /// `ssh`/`scp` could not be run, could not connect or authenticate.
        case sshFailed = "ssh_failed"
        /// The node's ssh host key is not known, does not match the pinned key, or changed: nothing was sent.
        case hostKey = "host_key"
        /// A remote step exited non-zero.
        case remoteCommandFailed = "remote_command_failed"
        /// The machine is not NixOS (no /etc/NIXOS).
        case notNixOS = "not_nixos"
        /// The ssh user is not root on the node.
        case notRoot = "not_root"
        /// The configuration imports ./hardware-configuration.nix, but the node has none.
        case missingHardwareConfiguration = "missing_hardware_configuration"
        /// `nixos-rebuild switch` failed; /etc/nixos was restored.
        case rebuildFailed = "rebuild_failed"
        /// The rebuild succeeded but the agent did not answer over mTLS in time.
        case agentTimeout = "agent_timeout"
        /// The PKI or the renderer could not provide the node's files.
        case materials
        /// A local file operation failed (staging directory).
        case local
    }

    /// What went wrong.
    public var code: Code
    /// The node concerned.
    public var node: String
    /// What went wrong and how to fix it.
    public var message: String

    /// Makes an error.
    public init(_ code: Code, node: String, _ message: String) {
        self.code = code
        self.node = node
        self.message = message
    }

    public var description: String { "bootstrap of \(node) failed (\(code.rawValue)): \(message)" }
}
