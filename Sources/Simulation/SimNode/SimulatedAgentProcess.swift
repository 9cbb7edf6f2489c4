import NK3Agent
import NK3Protocol

/// One agent process's view of a simulated node: the `NodeSystem` an `ApplyEngine` gets in the simulated
/// cluster. Every call fails once the machine has gone down, as the process would have died.
struct SimulatedAgentProcess: NodeSystem {
    let node: SimulatedNode
    let incarnation: Int
    let alive: @Sendable () -> Bool

    private func live() throws {
        guard alive() else {
            throw NodeSystemError(.processFailed, "[simulation] this agent process of \(node.hostname) was stopped")
        }
    }

    func readConfigFiles() async throws -> [String: String] {
        try live()
        return try node.readConfigFiles(incarnation: incarnation)
    }
    func replaceConfigFiles(with files: [String: String]) async throws {
        try live()
        try node.replaceConfigFiles(with: files, incarnation: incarnation)
    }
    func snapshotConfigFiles(touching names: Set<String>) async throws -> ConfigSnapshot {
        try live()
        return try node.snapshotConfigFiles(touching: names, incarnation: incarnation)
    }
    func restoreConfigFiles(_ snapshot: ConfigSnapshot) async throws {
        try live()
        try node.restoreConfigFiles(snapshot, incarnation: incarnation)
    }
    func rebuild(
        _ action: RebuildAction, upgrade: Bool, flake: String?, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult {
        try live()
        return try await node.rebuild(action, upgrade: upgrade, flake: flake, output: output, incarnation: incarnation)
    }
    func channelState() async throws -> ChannelState {
        try live()
        return try node.channelState(incarnation: incarnation)
    }
    func addChannel(url: String, name: String) async throws {
        try live()
        try node.addChannel(url: url, name: name, incarnation: incarnation)
    }
    func restoreChannel(_ saved: ChannelState) async throws {
        try live()
        try node.restoreChannel(saved, incarnation: incarnation)
    }
    func generations() async throws -> GenerationState {
        try live()
        return try node.generations(incarnation: incarnation)
    }
    func activate(generation number: Int, mode: ActivationMode) async throws {
        try live()
        try await node.activate(generation: number, mode: mode, incarnation: incarnation)
    }
    func trialBootLoader() async -> TrialBootLoader? { node.trialBootLoaderKind }
    func setBootDefault(generation number: Int) async throws {
        try live()
        try await node.setBootDefault(generation: number, incarnation: incarnation)
    }
    func setBootOnce(generation number: Int?) async throws {
        try live()
        try node.setBootOnce(generation: number, incarnation: incarnation)
    }
    func reboot() async throws {
        try live()
        try node.reboot(incarnation: incarnation)
    }
    func facts() async throws -> NodeFacts {
        try live()
        return try node.facts(incarnation: incarnation)
    }
    func kubelet(unit: String) async -> KubeletState {
        guard alive() else { return KubeletState(unit: unit, unitActive: false, healthz: nil) }
        return node.kubelet(unit: unit, incarnation: incarnation)
    }
}
