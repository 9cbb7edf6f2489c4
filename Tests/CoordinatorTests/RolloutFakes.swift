import Foundation
import NK3Coordinator
import NK3Kube
import NK3Protocol

/// The agent could not be reached (a fake transport error: no classification, so "unreachable").
struct FakeUnreachable: Error, CustomStringConvertible {
    var node: String
    var description: String { "connection refused by \(node)" }
}

/// A drain refused by a PodDisruptionBudget (fake).
struct FakeDrainBlocked: Error, CustomStringConvertible {
    var description: String { "eviction of default/web-1 blocked by PodDisruptionBudget web-pdb" }
}

/// An in-memory cluster of simulated agents and a simulated Kubernetes API behind the rollout ports.
/// Models: apply → rebuild → awaiting confirm; reboot → down for some polls → new boot id and the new
/// generation's kernel; confirm → committed; nk3 cordons with a recorded reason; a Lease with expiry;
/// progress storage; health gates that may recover slowly. Records calls and safety invariants.
actor RolloutFakeWorld {
    struct Node {
        var name: String
        var isServer: Bool
        var bootCount = 1
        var kernel = "6.6.45"
        /// Kernel the next generation boots (upgrades change it).
        var nextKernel = "6.6.45"
        var files: [String: String]
        var serial: UInt64 = 0
        var operation: OperationStatus?
        var lastResult: OperationResult?
        var previousFiles: [String: String]?
        var rebuildPollsLeft = 0
        var downPollsLeft = 0
        var down = false
        var readyPollsLeft = 0
        var cordonedByNK3: String?
        var cordonedByOther = false
        var confirmed: [UInt64] = []
        // Behaviours.
        var rebuildPolls = 2
        var downPolls = 3
        var readyPollsAfterBoot = 2
        var rebuildFails: String?
        var rebootIgnored = false
        var neverReadyAfterReboot = false
        var systemUnchanged = false
        var trialBootFallsBack = false
        /// Ready polls after a boot that still show the previous boot's status (Ready=True, old boot id): the
        /// node controller's grace period after a quick reboot.
        var staleReadyPollsAfterBoot = 0
        var staleReadyPollsLeft = 0
        /// The boot whose kubelet last posted to the API.
        var apiBootCount = 1
        /// After accepting a reboot, answer this many status calls with the old boot, then go down.
        var oldBootAnswersAfterReboot = 0
        var oldBootAnswersLeft = 0
        /// A machine that goes down for good.
        var neverReturns = false
        /// Uncordons while the API still showed the previous boot.
        var uncordonedWhileStale = 0

        var bootID: String { "boot-\(name)-\(bootCount)" }
        var configHash: String { ConfigFiles.hash(files: files) }
    }

    enum GateBehaviour: Sendable {
        /// Healthy at once.
        case healthy
        /// "recovering" for N polls, then healthy.
        case recovering(polls: Int)
        /// Never healthy (times out).
        case neverHealthy
    }

    var nodes: [String: Node] = [:]
    var order: [String] = []
    var lease: RolloutLease?
    var leaseRenewals = 0
    var progress: RolloutProgress?
    var gateScript: [GateBehaviour] = []
    /// What the drain preflight finds.
    var drainBlockers: [DrainBlocker] = []
    var calls: [String] = []
    var hook: (@Sendable (isolated RolloutFakeWorld, String) -> Void)?
    /// Invariants observed.
    var maxDisrupted = 0
    var maxServersDisrupted = 0
    var gatesWhileDisrupted = 0
    var gateRuns = 0
    var drainCount = 0
    let clock: RolloutTestClock

    init(clock: RolloutTestClock, servers: [String] = [], agents: [String] = [], files: [String: String] = RT.files("old")) {
        self.clock = clock
        for name in agents + servers {
            nodes[name] = Node(name: name, isServer: servers.contains(name), files: files)
        }
        // Inventory order: as given, servers first (like a real inventory listing the init server first).
        order = servers + agents
    }

    func update(_ name: String, _ change: (inout Node) -> Void) { change(&nodes[name]!) }
    func setHook(_ h: (@Sendable (isolated RolloutFakeWorld, String) -> Void)?) { hook = h }
    func setGates(_ script: [GateBehaviour]) { gateScript = script }
    func setDrainBlockers(_ b: [DrainBlocker]) { drainBlockers = b }
    func setLease(_ l: RolloutLease?) { lease = l }
    func node(_ name: String) -> Node { nodes[name]! }

    private func record(_ call: String) {
        calls.append(call)
        hook?(self, call)
    }

    /// Nodes disrupted right now: cordoned by nk3, or down.
    private func noteDisruption() {
        let disrupted = nodes.values.filter { $0.cordonedByNK3 != nil || $0.down }
        maxDisrupted = max(maxDisrupted, disrupted.count)
        maxServersDisrupted = max(maxServersDisrupted, disrupted.filter(\.isServer).count)
    }

    // MARK: Agents

    func status(_ name: String) throws -> AgentStatus {
        record("status \(name)")
        guard var n = nodes[name] else { throw FakeUnreachable(node: name) }
        if n.oldBootAnswersLeft > 0 {
            n.oldBootAnswersLeft -= 1
            if n.oldBootAnswersLeft == 0 {
                n.down = true
                n.downPollsLeft = n.neverReturns ? Int.max : n.downPolls
            }
            nodes[name] = n
            return agentStatus(n)
        }
        if n.down {
            n.downPollsLeft -= 1
            if n.downPollsLeft <= 0 { bootUp(&n) }
            nodes[name] = n
            if n.down { throw FakeUnreachable(node: name) }
        }
        return agentStatus(n)
    }

    private func bootUp(_ n: inout Node) {
        n.down = false
        n.bootCount += 1
        if let op = n.operation, op.phase == .awaitingConfirm, op.action == .boot {
            if n.trialBootFallsBack {
                n.files = n.previousFiles ?? n.files
                n.lastResult = OperationResult(
                    id: op.id, serial: op.serial, outcome: .rolledBack, message: "new generation failed to boot",
                    finishedAt: clock.date)
                n.operation = nil
            } else {
                n.kernel = n.nextKernel
            }
        }
        n.readyPollsLeft = n.readyPollsAfterBoot
        n.staleReadyPollsLeft = n.staleReadyPollsAfterBoot
        noteDisruption()
    }

    private func agentStatus(_ n: Node) -> AgentStatus {
        AgentStatus(
            hostname: n.name, kernel: n.kernel, nixosVersion: "24.05", currentSystem: nil, bootedSystem: nil,
            currentGeneration: 1, bootedGeneration: 1, profileGeneration: 1, bootID: n.bootID, uptimeSeconds: 100,
            configHash: n.configHash, files: ConfigFiles.digests(n.files), channel: nil, lastAcceptedSerial: n.serial,
            operation: n.operation, lastResult: n.lastResult,
            kubelet: KubeletState(unit: "k3s", unitActive: true, healthz: true))
    }

    func submit(_ name: String, _ command: Command) throws -> EnvelopeReceipt {
        record("submit \(command.kind) \(name)")
        guard var n = nodes[name], !n.down else { throw FakeUnreachable(node: name) }
        defer { nodes[name] = n }
        switch command {
        case .apply(let bundle):
            if let op = n.operation { throw WireError(.busy, "operation \(op.id) is \(op.phase.rawValue)") }
            n.serial += 1
            n.previousFiles = n.files
            n.files = bundle.files
            n.operation = OperationStatus(
                id: "op-\(name)-\(n.serial)", serial: n.serial, kind: "apply", action: bundle.action, phase: .rebuilding,
                startedAt: clock.date)
            n.rebuildPollsLeft = n.rebuildPolls
            if bundle.upgrade { n.nextKernel = "6.6.46" }
            return EnvelopeReceipt(serial: n.serial, kind: "apply", operationID: n.operation!.id, phase: .staged, message: "accepted")
        case .reboot:
            n.serial += 1
            if n.oldBootAnswersAfterReboot > 0 {
                n.oldBootAnswersLeft = n.oldBootAnswersAfterReboot
            } else if !n.rebootIgnored {
                n.down = true
                n.downPollsLeft = n.neverReturns ? Int.max : n.downPolls
            }
            nodes[name] = n
            noteDisruption()
            return EnvelopeReceipt(serial: n.serial, kind: "reboot", operationID: nil, phase: nil, message: "rebooting")
        case .confirm(let c):
            guard let op = n.operation, op.serial == c.applySerial, op.phase == .awaitingConfirm else {
                throw WireError(.invalidState, "no apply \(c.applySerial) awaiting confirm")
            }
            n.serial += 1
            n.confirmed.append(c.applySerial)
            n.lastResult = OperationResult(id: op.id, serial: op.serial, outcome: .committed, message: "confirmed", finishedAt: clock.date)
            n.operation = nil
            return EnvelopeReceipt(serial: n.serial, kind: "confirm", operationID: op.id, phase: .committed, message: "committed")
        case .rollback:
            throw WireError(.invalidState, "not modelled")
        case .stageAgentBinary:
            // As the real agent: an upload's envelope is refused on the command endpoint.
            throw WireError(.malformed, "a stageAgentBinary envelope goes with PUT /v1/agent-binary/SHA256")
        }
    }

    func operation(_ name: String, id: String) throws -> OperationReport {
        record("operation \(name)")
        guard var n = nodes[name], !n.down else { throw FakeUnreachable(node: name) }
        defer { nodes[name] = n }
        if let op = n.operation, op.id == id, op.phase == .rebuilding {
            if n.rebuildPollsLeft > 0 {
                n.rebuildPollsLeft -= 1
            } else if let why = n.rebuildFails {
                n.files = n.previousFiles ?? n.files
                n.lastResult = OperationResult(id: op.id, serial: op.serial, outcome: .failed, message: why, finishedAt: clock.date)
                n.operation = nil
            } else if n.systemUnchanged {
                n.lastResult = OperationResult(
                    id: op.id, serial: op.serial, outcome: .unchanged, message: "system unchanged", finishedAt: clock.date)
                n.operation = nil
            } else {
                var done = op
                done.phase = .awaitingConfirm
                done.bootIDAtRebuild = n.bootID
                n.operation = done
            }
        }
        let op = n.operation?.id == id ? n.operation : nil
        let result = n.lastResult?.id == id ? n.lastResult : nil
        return OperationReport(operation: op, result: result, logTail: result?.outcome == .failed ? "error: build failed" : "")
    }

    // MARK: Cluster

    /// The Node as the API shows it, judged by the real rule (`GateLogic.readiness`): after a boot, its status
    /// stays the previous boot's (Ready=True) for `staleReadyPollsAfterBoot` polls, then the new kubelet posts.
    func nodeReadiness(_ name: String, boot: NodeBoot?) -> NodeReadiness {
        record("ready? \(name)")
        guard var n = nodes[name] else { return .notReady("no node") }
        defer { nodes[name] = n }
        var ready = !n.down
        if n.apiBootCount != n.bootCount, !n.down {
            if n.staleReadyPollsLeft > 0 {
                n.staleReadyPollsLeft -= 1
            } else {
                n.apiBootCount = n.bootCount
            }
        }
        if n.apiBootCount == n.bootCount, !n.down {
            if n.neverReadyAfterReboot && n.bootCount > 1 {
                ready = false
            } else if n.readyPollsLeft > 0 {
                n.readyPollsLeft -= 1
                ready = false
            }
        } else {
            ready = true  // the previous boot's last status (or the stale one while it is down)
        }
        let api = NK3Kube.Node(
            metadata: ObjectMeta(name: name), spec: NodeSpec(),
            status: NodeStatus(
                conditions: [KubeCondition(type: "Ready", status: ready ? "True" : "False", reason: ready ? "KubeletReady" : "KubeletNotReady")],
                nodeInfo: NodeSystemInfo(bootID: "boot-\(name)-\(n.apiBootCount)")))
        return GateLogic.readiness(of: api, boot: boot)
    }

    func cordon(_ name: String, reason: String) {
        record("cordon \(name)")
        if nodes[name]!.cordonedByOther { return }
        nodes[name]!.cordonedByNK3 = reason
        noteDisruption()
    }

    func uncordonIfOurs(_ name: String) -> Bool {
        record("uncordon \(name)")
        if nodes[name]!.apiBootCount != nodes[name]!.bootCount { nodes[name]!.uncordonedWhileStale += 1 }
        guard nodes[name]!.cordonedByNK3 != nil else { return false }
        nodes[name]!.cordonedByNK3 = nil
        return true
    }

    func cordons() -> NodeCordons {
        var out = NodeCordons()
        for (k, v) in nodes {
            if let r = v.cordonedByNK3 { out.byNK3[k] = r } else if v.cordonedByOther { out.byOthers[k] = "" }
        }
        return out
    }

    func drain(_ name: String) {
        record("drain \(name)")
        drainCount += 1
    }

    func nextGateBehaviour() -> GateBehaviour {
        gateRuns += 1
        let disrupted = nodes.values.contains { $0.cordonedByNK3 != nil || $0.down }
        if disrupted { gatesWhileDisrupted += 1 }
        record("gates")
        return gateScript.isEmpty ? .healthy : gateScript.removeFirst()
    }

    func acquireLease(_ holder: String, ttl: Duration) throws -> RolloutLease {
        record("lease acquire \(holder)")
        let now = clock.date
        if let l = lease, l.holder != holder, l.expiresAt > now { throw RolloutLeaseHeld(holder: l.holder, expiresAt: l.expiresAt) }
        let l = RolloutLease(holder: holder, expiresAt: now.addingTimeInterval(seconds(ttl)))
        lease = l
        return l
    }

    func renewLease(_ holder: String, ttl: Duration) throws -> RolloutLease {
        leaseRenewals += 1
        let now = clock.date
        if let l = lease, l.holder != holder { throw RolloutLeaseHeld(holder: l.holder, expiresAt: l.expiresAt) }
        let l = RolloutLease(holder: holder, expiresAt: now.addingTimeInterval(seconds(ttl)))
        lease = l
        return l
    }

    func releaseLease(_ holder: String) {
        record("lease release \(holder)")
        if lease?.holder == holder { lease = nil }
    }

    func saveProgress(_ p: RolloutProgress) {
        record("save")
        progress = p
    }
    func clearProgress() { progress = nil }

    private func seconds(_ d: Duration) -> Double {
        let (s, a) = d.components
        return Double(s) + Double(a) / 1e18
    }
}

struct FakeAgents: RolloutAgents {
    let world: RolloutFakeWorld
    func status(node: String) async throws -> AgentStatus { try await world.status(node) }
    func submit(node: String, command: Command) async throws -> EnvelopeReceipt { try await world.submit(node, command) }
    func operation(node: String, id: String) async throws -> OperationReport { try await world.operation(node, id: id) }
}

struct FakeCluster: RolloutCluster {
    let world: RolloutFakeWorld
    let clock: RolloutTestClock

    func nodeReadiness(_ node: String, boot: NodeBoot?) async throws -> NodeReadiness {
        await world.nodeReadiness(node, boot: boot)
    }
    func cordon(_ node: String, reason: String) async throws { await world.cordon(node, reason: reason) }
    func uncordonIfOurs(_ node: String) async throws -> Bool { await world.uncordonIfOurs(node) }
    func cordons() async throws -> NodeCordons { await world.cordons() }
    func drain(_ node: String, timeout: Duration) async throws { await world.drain(node) }
    func drainBlockers(nodes: [String]) async throws -> [DrainBlocker] {
        await world.drainBlockers.filter { nodes.contains($0.node) }
    }

    /// Polls like the real gates: "recovering" lines until healthy, honouring `timeout` on the virtual clock.
    func runGates(since: Date?, timeout: Duration, report: @escaping @Sendable (GateReport) -> Void) async throws {
        let deadline = clock.now.advanced(by: timeout)
        var behaviour = await world.nextGateBehaviour()
        while true {
            switch behaviour {
            case .healthy:
                report(GateReport(status: .ok, message: "1 daemonsets healthy in namespace default"))
                report(GateReport(status: .ok, message: "ceph state is HEALTH_OK"))
                return
            case .recovering(let polls) where polls > 0:
                report(GateReport(status: .waiting, message: "1 daemonsets recovering in namespace default"))
                behaviour = .recovering(polls: polls - 1)
            case .recovering:
                behaviour = .healthy
                continue
            case .neverHealthy:
                report(GateReport(status: .waiting, message: "ceph state is HEALTH_WARN"))
            }
            if clock.now >= deadline {
                throw FakeGateTimeout()
            }
            try await clock.sleep(until: clock.now.advanced(by: .milliseconds(100)))
        }
    }

    func acquireLease(holder: String, ttl: Duration) async throws -> RolloutLease { try await world.acquireLease(holder, ttl: ttl) }
    func renewLease(holder: String, ttl: Duration) async throws -> RolloutLease { try await world.renewLease(holder, ttl: ttl) }
    func releaseLease(holder: String) async throws { await world.releaseLease(holder) }
    func saveProgress(_ progress: RolloutProgress) async throws { await world.saveProgress(progress) }
    func loadProgress() async throws -> RolloutProgress? { await world.progress }
    func clearProgress() async throws { await world.clearProgress() }
}

struct FakeGateTimeout: Error, RolloutClassifiedError, CustomStringConvertible {
    var rolloutFailureKind: RolloutFailure.Kind { .timeout }
    var description: String { "ceph is HEALTH_WARN (OSD_DOWN) since the node came back" }
}
