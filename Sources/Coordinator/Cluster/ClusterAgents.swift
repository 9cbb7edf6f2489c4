import Foundation
import NK3Protocol
import Synchronization

/// The real `RolloutAgents`: one `AgentClient` per node over mTLS, commands signed with the cluster's
/// Ed25519 key.
///
/// Serials: the next serial for a node is `max(lastAccepted + 1, now in milliseconds)`, where
/// `lastAccepted` is what the agent reported (fetched once per node per run) or what this run last sent.
/// Millisecond time keeps serials increasing across coordinator runs and machines without shared state;
/// the agent's report covers a clock that went backwards.
public final class ClusterAgents: RolloutAgents {
    private let clients: [String: AgentClient]
    private let signer: EnvelopeSigner
    private let validity: TimeInterval
    private let lastSerial = Mutex<[String: UInt64]>([:])
    private let now: @Sendable () -> Date

    /// Makes the adapter. `validity` is how long each signed envelope stays valid.
    public init(
        clients: [String: AgentClient], signer: EnvelopeSigner, validity: TimeInterval = 300,
        agentBinary: LocalAgentBinary? = nil, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.agentBinary = agentBinary
        self.clients = clients
        self.signer = signer
        self.validity = validity
        self.now = now
    }

    /// The client of `node`.
    public func client(_ node: String) throws -> AgentClient {
        guard let c = clients[node] else {
            throw CoordinatorError(.invalidInput, "node '\(node)' is not in the inventory")
        }
        return c
    }

    public func status(node: String) async throws -> AgentStatus {
        let s = try await client(node).status()
        if let last = s.lastAcceptedSerial { noteSerial(node, last) }
        return s
    }

    public func operation(node: String, id: String) async throws -> OperationReport {
        try await client(node).operation(id: id)
    }

    public func operation(node: String, id: String, waitUpTo: Duration) async throws -> OperationReport {
        try await client(node).operation(id: id, waitUpTo: waitUpTo)
    }

    public func submit(node: String, command: Command) async throws -> EnvelopeReceipt {
        let c = try client(node)
        if case .apply(let bundle) = command, let binary = agentBinary,
            bundle.files[BundleFile.agent]?.contains(binary.sha256) == true
        {
            try await ensureAgentBinary(binary, on: node)
        }
        let envelope = try await sign(command, for: node)
        // The agent goes down after answering a reboot: its connection is closed with the answer rather than kept
        // for the next request, which would find it dead (the next is the reachability poll after the boot).
        var leaveOpen = true
        if case .reboot = command { leaveOpen = false }
        return try await c.submit(envelope, leaveConnectionOpen: leaveOpen)
    }

    /// The agent binary the rendered `nk3-agent.nix` names (inventory `agent_binary`), uploaded to a node before
    /// the first apply that names it; nil: none.
    public let agentBinary: LocalAgentBinary?

    /// Uploads `binary` to `node` unless the agent already has it.
    public func ensureAgentBinary(_ binary: LocalAgentBinary, on node: String) async throws {
        let c = try client(node)
        let presence: AgentBinaryPresence
        do {
            presence = try await c.agentBinaryPresence(sha256: binary.sha256)
        } catch {
            guard error.wireError?.code == .notFound else { throw error }
            throw CoordinatorError(
                .invalidInput,
                "the agent on \(node) cannot receive an agent binary (it predates uploads): place this one with "
                    + "`nk3 bootstrap \(node) --agent-binary \(binary.path)`, then rerun")
        }
        if presence.present { return }
        let envelope = try await sign(
            .stageAgentBinary(StageAgentBinaryCommand(sha256: binary.sha256, size: binary.data.count)), for: node)
        _ = try await c.uploadAgentBinary(binary.data, sha256: binary.sha256, envelope: envelope)
    }

    /// `command` signed for `node` with its next serial.
    private func sign(_ command: Command, for node: String) async throws -> SignedEnvelope {
        if lastSerial.withLock({ $0[node] }) == nil {
            // First command to this node in this run: learn its last accepted serial.
            _ = try await status(node: node)
        }
        let t = now()
        let serial: UInt64 = lastSerial.withLock { m in
            let next = max((m[node] ?? 0) + 1, UInt64(max(0, t.timeIntervalSince1970 * 1000)))
            m[node] = next
            return next
        }
        return try signer.sign(command, node: node, serial: serial, now: t, validity: validity)
    }

    private func noteSerial(_ node: String, _ serial: UInt64) {
        lastSerial.withLock { m in m[node] = max(m[node] ?? 0, serial) }
    }
}
