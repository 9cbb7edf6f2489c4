import Foundation
import NK3Common
import NK3Protocol

/// Bootstrap's inputs taken from a loaded cluster: agent certificates from the cluster PKI (issued on first
/// use, then reused, so a re-run ships identical files), and each node's bundle from the inventory's template.
public struct SessionBootstrapMaterials: BootstrapMaterialSource {
    private let session: ClusterSession

    /// Uses `session`'s PKI and renderer.
    public init(session: ClusterSession) { self.session = session }

    public func tlsMaterial(for target: BootstrapTarget) async throws -> AgentTLSMaterial {
        let pki = session.pki
        let files = pki.agentFiles(node: target.name)
        if !SecureFiles.exists(files.certificatePath) {
            // SANs: the node's name and the address the coordinator connects to (AgentClient checks it).
            try pki.issueAgent(node: target.name, addresses: [target.address])
        }
        return AgentTLSMaterial(
            certificatePEM: try SecureFiles.readText(files.certificatePath),
            privateKeyPEM: try SecureFiles.readPrivateKey(files.privateKeyPath),
            caCertificatePEM: try SecureFiles.readText(pki.caCertificatePath))
    }

    /// The node's bundle. The machine's `system.stateVersion` (found by bootstrap's preflight) must agree with
    /// the inventory's (`state_version`, the node's hostvar or the top-level key); where the inventory has none,
    /// the machine's is given to the template as the node's `state_version` hostvar, so that the first
    /// configuration keeps the release the machine was installed with (nixpkgs nixos/modules/misc/version.nix).
    public func configurationFiles(for target: BootstrapTarget) async throws -> [String: String] {
        var inventory = session.inventory
        guard let index = inventory.nodes.firstIndex(where: { $0.name == target.name }) else {
            throw BootstrapError(.invalidInput, node: target.name, "\(target.name) is not in the inventory")
        }
        let node = inventory.nodes[index]
        let declared = (node[hostvar: "state_version"] ?? inventory.topLevel.first { $0.key == "state_version" }?.value)?
            .stringValue
        if let machine = target.machineStateVersion {
            if let declared, declared != machine {
                throw BootstrapError(
                    .invalidInput, node: target.name,
                    "the inventory says state_version \"\(declared)\" but the machine's configuration sets "
                        + "system.stateVersion = \"\(machine)\"; a machine keeps the release it was installed with: "
                        + "set state_version: \"\(machine)\" for \(target.name) in the inventory")
            }
            if declared == nil {
                inventory.nodes[index].hostvars.append(InventoryEntry(key: "state_version", value: .string(machine)))
                // The renderer reads the parsed field (the hostvar is for the template's `node.state_version`).
                inventory.nodes[index].stateVersion = machine
            }
        }
        let rendered: [String: [String: String]]
        do {
            rendered = try BundleRenderer.load(inventory: inventory, signingPublicKeys: [session.signingPublicKey])
                .renderAll()
        } catch {
            throw BootstrapError(.materials, node: target.name, "cannot render the node's configuration: \(error)")
        }
        guard var files = rendered[target.name] else {
            throw BootstrapError(.invalidInput, node: target.name, "\(target.name) is not in the inventory")
        }
        // Enrolment rebuilds with a plain `nixos-rebuild switch`, which would take an /etc/nixos/flake.nix as an
        // implied `--flake /etc/nixos` (nixpkgs pkgs/os-specific/linux/nixos-rebuild), unlocked and unpinned: flake
        // mode starts with the first `nk3 apply`, whose agent builds the flake with its lock.
        files[FlakeLock.flakeFile] = nil
        files[FlakeLock.lockFile] = nil
        return files
    }

    /// The inventory's `join_token`, placed on the node for k3s's `tokenFile` (never in the Nix store or a bundle).
    public func k3sToken(for target: BootstrapTarget) async throws -> String? {
        let token = session.inventory.joinToken
        return token.isEmpty ? nil : token
    }
}

/// Asks a node's agent for its status with the session's client (mTLS, agent certificate checked against the
/// cluster CA and the node's address).
public struct SessionAgentProbe: BootstrapAgentProbe {
    private let clients: [String: AgentClient]

    /// Uses `session`'s per-node clients.
    public init(session: ClusterSession) { self.clients = session.clients }

    public func probe(_ target: BootstrapTarget) async -> AgentProbeResult {
        guard let client = clients[target.name] else { return .noAnswer("\(target.name) is not in the inventory") }
        return await .asking(client)
    }
}

extension ClusterSession {
    /// The bootstrap target of an inventory node given by name or address (agent port from the session's client,
    /// which honours a per-node `agent_port` hostvar; pinned ssh host key from the `ssh_host_key` hostvar).
    public func bootstrapTarget(_ nameOrAddress: String) -> BootstrapTarget? {
        guard let node = inventory.node(nameOrAddress) else { return nil }
        return BootstrapTarget(
            name: node.name, address: node.address, agentPort: clients[node.name]?.endpoint.port ?? inventory.agentPort,
            sshHostKey: node[hostvar: "ssh_host_key"]?.stringValue)
    }
}
