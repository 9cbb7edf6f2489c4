import Foundation
import NK3Common

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

    public func configurationFiles(for target: BootstrapTarget) async throws -> [String: String] {
        guard let files = try session.render()[target.name] else {
            throw BootstrapError(.invalidInput, node: target.name, "\(target.name) is not in the inventory")
        }
        return files
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
    /// which honours a per-node `agent_port` hostvar).
    public func bootstrapTarget(_ nameOrAddress: String) -> BootstrapTarget? {
        guard let node = inventory.node(nameOrAddress) else { return nil }
        return BootstrapTarget(
            name: node.name, address: node.address, agentPort: clients[node.name]?.endpoint.port ?? inventory.agentPort)
    }
}
