import Foundation
import Logging
import NK3Agent
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NK3Simulation
import Synchronization
import Testing

/// One end-to-end test's world: a fresh `SimulatedCluster` (real agents over mTLS, simulated machines, fake
/// Kubernetes API) in its own temp directory, and the REAL coordinator path (`ClusterSession.load` +
/// `.rollout`) pointed at its generated inventory.
///
/// Every simulated system operation is instant; the only real waits are the coordinator's polls (20 ms) and
/// the agents' restarts after reboots. A "Rook" ticker refreshes the CephCluster status every 25 ms real
/// (the simulation's own periodic check is a real second at instant speed, and never runs on a manual
/// clock), so the Ceph gate still needs a check made AFTER each node came back — just a fresh one soon.
final class E2ECluster: Sendable {
    let sim: SimulatedCluster
    let directory: URL
    /// The agents' clock (an `E2EJumpClock` when the test waits out confirm deadlines).
    let agentClock: any AgentClock
    private let ticker: Task<Void, Never>

    static let quiet = Logger(label: "e2e", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Inventory timeouts (seconds) for these tests: long enough never to fire on a loaded 2-core machine
    /// unless a fault makes them, short enough for a fault to end a test quickly. `confirm` is the agents'
    /// deadline: ≥ 10 s real (never shorter while it runs on the system clock); tests that need it to pass use a
    /// `E2EJumpClock` and jump it.
    static let defaultTimeouts = ["drain": 20, "reboot": 20, "ready": 20, "gates": 20, "confirm": 120, "rebuild": 20]

    private init(sim: SimulatedCluster, directory: URL, agentClock: any AgentClock, rookTicker: Bool) {
        self.sim = sim
        self.directory = directory
        self.agentClock = agentClock
        ticker = Task { [sim] in
            while rookTicker, !Task.isCancelled {
                sim.checkCephNow()
                try? await Task.sleep(for: .milliseconds(25))
            }
        }
    }

    /// Starts a cluster, runs `body`, shuts everything down (also when `body` throws). `speed` and `configure`
    /// change the simulation (the node controller's grace period is on, as in `SimulatedCluster.Options`).
    /// Without `rookTicker` only the simulation's own Rook model refreshes the CephCluster status.
    static func with(
        nodes: Int = 3, servers: Int? = nil, timeouts: [String: Int] = [:], disruptionBudget: Int = 1,
        agentClock: any AgentClock = SystemAgentClock(), speed: SimulationSpeed = .instant, rookTicker: Bool = true,
        configure: (inout SimulatedCluster.Options) -> Void = { _ in }, _ body: (E2ECluster) async throws -> Void
    ) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-e2e-\(UUID().uuidString.prefix(12))")
        var options = SimulatedCluster.Options()
        options.announce = false
        options.disruptionBudget = disruptionBudget
        options.inventoryTimeouts = defaultTimeouts.merging(timeouts) { $1 }
        configure(&options)
        let sim = try await SimulatedCluster.start(
            nodes: nodes, servers: servers, speed: speed, in: dir, options: options, clock: agentClock, logger: quiet)
        let cluster = E2ECluster(sim: sim, directory: dir, agentClock: agentClock, rookTicker: rookTicker)
        do {
            try await body(cluster)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    func shutdown() async {
        ticker.cancel()
        await sim.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    var names: [String] { sim.members.map(\.name) }
    var inventoryPath: String { sim.inventoryPath }

    // MARK: - the coordinator, as `nk3 apply/upgrade/reboot` run it

    /// `nk3 apply|upgrade|reboot -i inventory.yaml`: a new `ClusterSession` (a new process, as far as the
    /// coordinator is concerned) and its rollout.
    func rollout(
        _ kind: ClusterSession.RolloutKind, budget: Int = 1, holder: String = "e2e@test/run",
        skipDrainPreflight: Bool = false, sink: any RolloutEventSink
    ) async throws -> RolloutSummary {
        let session = try ClusterSession.load(
            inventoryPath: inventoryPath, overrides: sim.sessionOverrides, logger: Self.quiet)
        return try await session.rollout(
            kind, options: RolloutPlan.Options(disruptionBudget: budget, skipDrainPreflight: skipDrainPreflight),
            sink: sink, clock: ContinuousClock(), pollInterval: .milliseconds(20), holder: holder)
    }

    /// Runs a rollout that must fail and returns its `RolloutFailure` (records an issue otherwise).
    func failingRollout(
        _ kind: ClusterSession.RolloutKind, budget: Int = 1, holder: String = "e2e@test/run",
        skipDrainPreflight: Bool = false, sink: any RolloutEventSink, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> RolloutFailure? {
        do {
            let summary = try await rollout(
                kind, budget: budget, holder: holder, skipDrainPreflight: skipDrainPreflight, sink: sink)
            Issue.record("the rollout succeeded but should have failed: \(summary)", sourceLocation: sourceLocation)
            return nil
        } catch let failure as RolloutFailure {
            return failure
        }
    }

    // MARK: - a configuration change, as `nk3 demo` makes it

    /// The line the change adds (the example in the Python nk3's README).
    static let changedLine = DemoRunner.changedLine

    /// Edits the template exactly like `DemoRunner` does: the default template plus one line, saved next to
    /// the inventory and named by `template:`.
    /// Puts the template back to the default (after `editTemplate`): what an operator does to revert a change.
    func restoreTemplate() throws {
        try DefaultTemplate.source.write(
            toFile: directory.appendingPathComponent("template.nix.j2").path, atomically: true, encoding: .utf8)
    }

    func editTemplate(adding line: String = E2ECluster.changedLine) throws {
        let templatePath = directory.appendingPathComponent("template.nix.j2").path
        let anchor = "  boot.kernelModules = [ \"rbd\" ];\n"
        let changed = DefaultTemplate.source.replacingOccurrences(of: anchor, with: anchor + line + "\n")
        try #require(changed != DefaultTemplate.source, "the default template changed shape")
        try changed.write(toFile: templatePath, atomically: true, encoding: .utf8)
        var yaml = try String(contentsOfFile: inventoryPath, encoding: .utf8)
        if !yaml.contains("\ntemplate:") {
            yaml += (yaml.hasSuffix("\n") ? "" : "\n") + "template: template.nix.j2\n"
            try yaml.write(toFile: inventoryPath, atomically: true, encoding: .utf8)
        }
    }

    /// Sets the inventory's `nix_channel` (a name or a URL).
    func setInventoryChannel(_ channel: String) throws {
        let yaml = try String(contentsOfFile: inventoryPath, encoding: .utf8)
        let lines = yaml.components(separatedBy: "\n")
        try #require(lines.filter { $0.hasPrefix("nix_channel: ") }.count == 1, "the inventory changed shape")
        let edited = lines.map { $0.hasPrefix("nix_channel: ") ? "nix_channel: \"\(channel)\"" : $0 }
        try edited.joined(separator: "\n").write(toFile: inventoryPath, atomically: true, encoding: .utf8)
    }

    /// Points node `name`'s agent connection at another port on 127.0.0.1 (a proxy), keeping the certificate
    /// check against the node's name.
    func redirectAgent(of name: String, toPort port: Int) throws {
        let yaml = try String(contentsOfFile: inventoryPath, encoding: .utf8)
        let original = "    agent_port: \(try sim.member(name).port)\n"
        var lines = yaml.components(separatedBy: "\n")
        var inNode = false
        var replaced = false
        for i in lines.indices {
            if lines[i].hasPrefix("  "), !lines[i].hasPrefix("    ") { inNode = lines[i] == "  \(name):" }
            if inNode, lines[i] + "\n" == original {
                lines[i] = "    agent_port: \(port)"
                replaced = true
            }
        }
        try #require(replaced, "no agent_port line for \(name) in the generated inventory")
        try lines.joined(separator: "\n").write(toFile: inventoryPath, atomically: true, encoding: .utf8)
    }

    // MARK: - observing the cluster

    /// Every agent's status, straight from the agents (operator certificate), by node.
    func statuses() async throws -> [String: AgentStatus] {
        var out: [String: AgentStatus] = [:]
        for n in names { out[n] = try await sim.agentClient(for: n).status() }
        return out
    }

    /// Nodes the fake Kubernetes API has unschedulable, sorted.
    func cordoned() -> [String] {
        sim.kube.state.nodes().filter(\.isUnschedulable).compactMap(\.metadata.name).sorted()
    }

    /// Nodes carrying nk3's cordon annotation, sorted.
    func cordonedByNK3() -> [String] {
        sim.kube.state.nodes().filter { $0.annotation(NK3Annotations.cordonedBy) != nil }.compactMap(\.metadata.name)
            .sorted()
    }

    /// The rollout Lease, if any.
    func lease() -> Lease? { sim.kube.state.get(.leases, namespace: "kube-system", name: "nk3-rollout-sim") }

    /// What the coordinator renders for every node from the current inventory and template.
    func rendered() throws -> [String: [String: String]] {
        try ClusterSession.load(
            inventoryPath: inventoryPath, overrides: sim.sessionOverrides, logger: Self.quiet).render()
    }

    /// The managed files on node `name`'s (simulated) disk.
    func files(on name: String) async throws -> [String: String] {
        try await sim.node(name).readConfigFiles()
    }
}

/// Records events, and lets a test react to one synchronously, inside the coordinator's driver loop, before
/// the coordinator carries out the actions that follow it (a deterministic "at this point").
final class E2ESink: RolloutEventSink, Sendable {
    private let state = Mutex<(events: [RolloutEvent], hooks: [@Sendable (RolloutEvent) -> Void])>(([], []))

    func emit(_ event: RolloutEvent) {
        let hooks = state.withLock { s in
            s.events.append(event)
            return s.hooks
        }
        for h in hooks { h(event) }
    }

    /// Calls `hook` for every later event.
    func onEvent(_ hook: @escaping @Sendable (RolloutEvent) -> Void) {
        state.withLock { $0.hooks.append(hook) }
    }

    var events: [RolloutEvent] { state.withLock { $0.events } }
    var messages: [String] { events.map(\.message) }

    /// Index of the first message equal to `text` at or after `from` (nil if none).
    func index(of text: String, from: Int = 0) -> Int? {
        let m = messages
        guard from < m.count else { return nil }
        return m[from...].firstIndex(of: text)
    }

    /// Whether `lines` appear in this order (not necessarily adjacent), each after the one before.
    func inOrder(_ lines: [String]) -> Bool {
        var from = 0
        for l in lines {
            guard let i = index(of: l, from: from) else { return false }
            from = i + 1
        }
        return true
    }

    /// The transcript, for failure messages.
    var transcript: String { messages.joined(separator: "\n") }
}

/// A one-shot latch tests can await (no sleeps): `open()` once, `wait()` returns after that.
final class E2ELatch: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard !s.open else { return [] }
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    var isOpen: Bool { state.withLock { $0.open } }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}

/// Polls `condition` until it holds or `timeout` (real time, generous) passes; returns the last answer.
func eventually(
    _ timeout: Duration = .seconds(15), every: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let end = clock.now + timeout
    while clock.now < end {
        if try await condition() { return true }
        try? await Task.sleep(for: every)
    }
    return try await condition()
}

/// Every end-to-end suite of this folder's E2E files nests here, so they run one test at a time: each starts a
/// whole simulated cluster, and several at once on a 2-core machine turn timeouts into noise.
@Suite("E2E (simulation)", .serialized)
enum E2E {}
