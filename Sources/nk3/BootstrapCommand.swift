import ArgumentParser
import Foundation
import NK3Coordinator

/// `nk3 bootstrap NODE…`: enrol fresh NixOS machines over ssh (see docs/DEPLOYING.md).
struct BootstrapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract: "Enrol fresh NixOS machines: install the agent's TLS files and the first configuration over ssh.",
        discussion: """
            The node's ssh host key must be known before anything is sent: in --known-hosts (or \
            ~/.ssh/known_hosts), or pinned in the inventory as the node's ssh_host_key hostvar (its public key, \
            'ssh-ed25519 AAAA…', or fingerprint, 'SHA256:…'); --trust-first-use accepts an unknown key instead.

            For each NODE (an inventory name or address), as root over ssh with the system OpenSSH client: checks \
            the machine is NixOS, copies the agent certificate, key and cluster CA to /var/lib/nk3-agent/tls \
            (0600, issuing the certificate into the PKI first if it has none), the agent binary to \
            /var/lib/nk3-agent/bin/nk3-agent and the inventory's join_token to /etc/nk3/k3s-token (0600), reads \
            the machine's system.stateVersion (it must match the inventory's state_version; where the inventory \
            has none, the machine's is used), lands the rendered configuration.nix, \
            nk3-agent.nix and nk3-agent-module.nix in /etc/nixos next to the machine's own \
            hardware-configuration.nix (replaced files are backed up under /var/lib/nk3-agent/bootstrap-backup), \
            runs `nixos-rebuild switch`, and waits until the agent answers over mutual TLS. A failed rebuild puts \
            the previous files back. A node whose agent already answers is left alone. After this, changes go \
            through `nk3 apply` only. Exit status 1 if any node failed.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Nodes to enrol: inventory hostnames or addresses.")
    var nodes: [String] = []

    @Flag(help: "Enrol every node of the inventory.")
    var all = false

    @Option(name: [.customLong("ssh-key"), .customLong("private-key")], help: "ssh private key (like the Python tool's --private-key).")
    var sshKey: String?

    @Option(help: "sshd port on the nodes.")
    var sshPort: Int = 22

    @Option(help: "ssh user; must be root on the node.")
    var sshUser: String = "root"

    @Option(
        help: """
            known_hosts file holding the nodes' ssh host keys (default ~/.ssh/known_hosts). A node whose key is \
            neither there nor pinned in the inventory (hostvar ssh_host_key) is refused before anything is sent.
            """)
    var knownHosts: String?

    @Flag(
        help: """
            Trust-on-first-use: accept the host key of a node not in the known_hosts file and record it there. \
            Only on a network you trust: the agent's private key travels over that first connection.
            """)
    var trustFirstUse = false

    @Option(help: "ssh_config file to use instead of ~/.ssh/config.")
    var sshConfig: String?

    @Option(
        help: """
            Release nk3-agent binary to copy to /var/lib/nk3-agent/bin/nk3-agent on each node (the generated \
            nk3-agent.nix wraps it). Default: the inventory's agent_binary, else the nk3-agent next to this nk3.
            """)
    var agentBinary: String?

    @Flag(help: "Copy no agent binary (the nodes' configuration supplies the nk3-agent package).")
    var noAgentBinary = false

    @Option(help: "Client certificate (clients/NAME in the PKI) used to reach the agents.")
    var client: String = "operator"

    @Option(help: "Seconds to wait for the agent to answer after the rebuild.")
    var agentTimeout: Int = 300

    @Option(help: "Seconds `nixos-rebuild switch` may take on a node.")
    var rebuildTimeout: Int = 3600

    func validate() throws {
        if all && !nodes.isEmpty { throw ValidationError("give NODE names or --all, not both") }
        if !all && nodes.isEmpty { throw ValidationError("name at least one NODE to enrol (or --all)") }
        guard (1...65535).contains(sshPort) else { throw ValidationError("--ssh-port must be 1-65535") }
        guard agentTimeout > 0, rebuildTimeout > 0 else { throw ValidationError("timeouts must be positive") }
        if let knownHosts, !trustFirstUse, !FileManager.default.isReadableFile(atPath: knownHosts) {
            throw ValidationError(
                "--known-hosts \(knownHosts) is not a readable file (pass --trust-first-use to start one)")
        }
        if noAgentBinary && agentBinary != nil { throw ValidationError("give --agent-binary or --no-agent-binary, not both") }
        if let agentBinary, !FileManager.default.isReadableFile(atPath: agentBinary) {
            throw ValidationError("--agent-binary \(agentBinary) is not a readable file")
        }
        if let sshKey, !FileManager.default.isReadableFile(atPath: sshKey) {
            throw ValidationError("--ssh-key \(sshKey) is not a readable file")
        }
    }

    /// The nk3-agent in the directory of the running nk3, if there is one.
    static func siblingAgent() -> String? {
        // /proc/self/exe names the running executable whatever PATH lookup started it (proc(5)).
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let path = me.deletingLastPathComponent().appendingPathComponent("nk3-agent").path
        return FileManager.default.isReadableFile(atPath: path) ? path : nil
    }

    func run() async throws {
        let session: ClusterSession
        do {
            session = try ClusterSession.load(
                inventoryPath: global.inventory,
                overrides: .init(
                    kubeconfig: global.kubeconfig, kubeContext: global.context, pkiDirectory: global.pkiDir,
                    clientName: client),
                logger: global.logger())
        } catch let e as CoordinatorError {
            FileDescriptorWriter(fd: 2).write("error: \(e.message)\n")
            throw ExitCode(e.kind.exitCode)
        }

        var targets: [BootstrapTarget] = []
        for name in all ? session.nodeNames : nodes {
            guard let t = session.bootstrapTarget(name) else {
                throw ValidationError("\(name) is not a node of \(global.inventory) (give its hostname or address)")
            }
            targets.append(t)
        }

        var ssh = SSHOptions()
        ssh.user = sshUser
        ssh.port = sshPort
        ssh.identityFile = sshKey
        ssh.knownHostsFile = knownHosts
        ssh.trustOnFirstUse = trustFirstUse
        ssh.configFile = sshConfig
        var settings = BootstrapSettings(ssh: ssh)
        settings.agentTimeout = .seconds(agentTimeout)
        settings.rebuildTimeout = .seconds(rebuildTimeout)
        if !noAgentBinary {
            guard let binary = agentBinary ?? session.inventory.agentBinaryPath ?? Self.siblingAgent() else {
                throw ValidationError(
                    "no nk3-agent next to this nk3: pass --agent-binary PATH (a release build), or --no-agent-binary")
            }
            settings.agentBinary = binary
        }

        let out = FileDescriptorWriter(fd: 1)
        let err = FileDescriptorWriter(fd: 2)
        let bootstrapper = NodeBootstrapper(
            settings: settings, materials: SessionBootstrapMaterials(session: session),
            probe: SessionAgentProbe(session: session), logger: session.logger, report: { out.write($0 + "\n") })

        var failed: [String] = []
        for target in targets {
            do {
                _ = try await bootstrapper.bootstrap(target)
            } catch {
                err.write("error: \(error.description)\n")
                failed.append(target.name)
            }
        }
        if !failed.isEmpty {
            err.write("bootstrap failed on \(failed.count) of \(targets.count) node(s): \(failed.joined(separator: ", "))\n")
            throw ExitCode(1)
        }
    }
}
