import Foundation
import NIOSSL
import NK3Protocol

/// What bootstrap needs from the rest of the coordinator for one node: its TLS material (loaded from, or issued
/// into, the cluster PKI) and its first rendered configuration (configuration.nix, nk3-agent.nix,
/// nk3-agent-module.nix).
///
/// Implementations should be stable: a second call for the same node should return the same certificate
/// (persist what was issued), so that a re-run compares equal and changes nothing.
public protocol BootstrapMaterialSource: Sendable {
    /// The agent's certificate, key and the cluster CA for `target`.
    func tlsMaterial(for target: BootstrapTarget) async throws -> AgentTLSMaterial
    /// The files to land in /etc/nixos (name → content). Must contain configuration.nix. Any
    /// hardware-configuration.nix in it is ignored: the machine's own is kept.
    func configurationFiles(for target: BootstrapTarget) async throws -> [String: String]
    /// The k3s join token to place at `PlacedFile.k3sTokenPath` (0600), or nil for none.
    func k3sToken(for target: BootstrapTarget) async throws -> String?
}

extension BootstrapMaterialSource {
    /// No token by default.
    public func k3sToken(for target: BootstrapTarget) async throws -> String? { nil }
}

/// A `BootstrapMaterialSource` made of two closures, for wiring.
public struct ClosureMaterialSource: BootstrapMaterialSource {
    private let tls: @Sendable (BootstrapTarget) async throws -> AgentTLSMaterial
    private let files: @Sendable (BootstrapTarget) async throws -> [String: String]
    private let token: @Sendable (BootstrapTarget) async throws -> String?

    /// Makes a source from closures.
    public init(
        tls: @escaping @Sendable (BootstrapTarget) async throws -> AgentTLSMaterial,
        files: @escaping @Sendable (BootstrapTarget) async throws -> [String: String],
        token: @escaping @Sendable (BootstrapTarget) async throws -> String? = { _ in nil }
    ) {
        self.tls = tls
        self.files = files
        self.token = token
    }

    public func k3sToken(for target: BootstrapTarget) async throws -> String? { try await token(target) }

    public func tlsMaterial(for target: BootstrapTarget) async throws -> AgentTLSMaterial { try await tls(target) }
    public func configurationFiles(for target: BootstrapTarget) async throws -> [String: String] {
        try await files(target)
    }
}

/// The answer of one attempt to reach a node's agent.
public enum AgentProbeResult: Sendable, Hashable {
    /// The agent answered over mTLS (with its identity verified); the text summarises its status.
    case answers(String)
    /// No (verified) answer; the text says why.
    case noAnswer(String)
}

extension AgentProbeResult {
    /// Asks `client` for the agent's status and summarises the answer (hostname, version, NixOS, generation).
    static func asking(_ client: AgentClient) async -> AgentProbeResult {
        do {
            let status = try await client.status()
            var parts = ["hostname \(status.hostname)", "agent \(status.agentVersion)"]
            if let v = status.nixosVersion { parts.append("NixOS \(v)") }
            if let g = status.currentGeneration { parts.append("generation \(g)") }
            return .answers(parts.joined(separator: ", "))
        } catch {
            return .noAnswer(error.message)
        }
    }
}

/// Asks whether a node's agent answers over mutual TLS.
public protocol BootstrapAgentProbe: Sendable {
    /// One attempt; must not hang longer than the implementation's own timeout.
    func probe(_ target: BootstrapTarget) async -> AgentProbeResult
}

/// A probe that asks `GET /v1/status` with `AgentClient`: the agent's certificate must chain to the cluster CA
/// and carry the node's address; ours carries our role.
public struct AgentClientProbe: BootstrapAgentProbe {
    private let tls: AgentClientTLS
    private let timeout: Duration

    /// Makes a probe from the agents' client TLS settings.
    public init(tls: AgentClientTLS, timeout: Duration = .seconds(5)) {
        self.tls = tls
        self.timeout = timeout
    }

    public func probe(_ target: BootstrapTarget) async -> AgentProbeResult {
        let client = AgentClient(
            endpoint: AgentEndpoint(host: target.address, port: target.agentPort, expectedName: target.address),
            tls: tls, timeout: timeout)
        return await .asking(client)
    }
}
