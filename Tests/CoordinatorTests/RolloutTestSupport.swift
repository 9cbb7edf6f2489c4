import Foundation
import NK3Coordinator
import NK3Protocol

/// Builders shared by the rollout, budget and lease tests.
enum RT {
    static let t0 = Date(timeIntervalSince1970: 1_714_564_800)

    static func files(_ marker: String) -> [String: String] { ["configuration.nix": "{ \(marker) }"] }

    static func bundle(_ marker: String = "new", action: RebuildAction = .boot, upgrade: Bool = false) -> ApplyBundle {
        ApplyBundle(files: files(marker), action: action, upgrade: upgrade)
    }

    static func status(
        _ name: String, boot: Int = 1, kernel: String = "6.6.45", files: [String: String] = RT.files("old"),
        operation: OperationStatus? = nil, lastResult: OperationResult? = nil
    ) -> AgentStatus {
        AgentStatus(
            hostname: name, kernel: kernel, nixosVersion: "24.05", currentSystem: nil, bootedSystem: nil,
            currentGeneration: 1, bootedGeneration: 1, profileGeneration: 1, bootID: "\(name)-boot-\(boot)",
            uptimeSeconds: 10, configHash: ConfigFiles.hash(files: files), files: ConfigFiles.digests(files),
            channel: nil, lastAcceptedSerial: nil, operation: operation, lastResult: lastResult,
            kubelet: KubeletState(unit: "k3s", unitActive: true, healthz: true))
    }

    /// A plan where every node gets `bundle` (servers named first, like an inventory).
    static func applyPlan(
        servers: [String] = [], agents: [String] = [], bundle: ApplyBundle = RT.bundle(),
        options: RolloutPlan.Options = .init()
    ) -> RolloutPlan {
        RolloutPlan(
            kind: .apply,
            nodes: servers.map { .init(name: $0, isServer: true, bundle: bundle) }
                + agents.map { .init(name: $0, isServer: false, bundle: bundle) },
            options: options)
    }

    static func start(_ names: [String], at: Date = t0, cordoned: [String: String] = [:], progress: RolloutProgress? = nil,
                      status: (String) -> AgentStatus? = { RT.status($0) }) -> RolloutMachine.Start {
        var statuses: [String: AgentStatus] = [:]
        var unreachable: [String: String] = [:]
        for n in names {
            if let s = status(n) { statuses[n] = s } else { unreachable[n] = "connection refused" }
        }
        return .init(statuses: statuses, unreachable: unreachable, cordonedByNK3: cordoned, progress: progress, at: at)
    }
}

extension Array where Element == RolloutMachine.Action {
    /// The actions other than notices and progress saves.
    var work: [RolloutMachine.Action] {
        filter {
            switch $0 {
            case .notify, .saveProgress: return false
            default: return true
            }
        }
    }
    var messages: [String] {
        compactMap { if case .notify(let n) = $0 { return n.message } else { return nil } }
    }
    var saved: [RolloutProgress] {
        compactMap { if case .saveProgress(let p) = $0 { return p } else { return nil } }
    }
    var failure: RolloutFailure? {
        for a in self { if case .abort(let f) = a { return f } }
        return nil
    }
    var summary: RolloutSummary? {
        for a in self { if case .done(let s) = a { return s } }
        return nil
    }
}

/// Drives a `RolloutMachine` with no I/O: answers each action from a tiny in-memory model, picking the next
/// outstanding action in FIFO order or pseudo-randomly (seeded) to explore interleavings, and checks the
/// safety invariants after every step.
struct MachineSim {
    struct SimNode {
        var boot = 1
        var kernel = "6.6.45"
        var serial: UInt64 = 0
    }

    var machine: RolloutMachine
    var sim: [String: SimNode] = [:]
    var outstanding: [RolloutMachine.Action] = []
    var trace: [RolloutMachine.Action] = []
    var messages: [String] = []
    var saves: [RolloutProgress] = []
    var failure: RolloutFailure?
    var summary: RolloutSummary?
    var seed: UInt64
    var clockTick = 0
    /// Answers instead of the model (failure injection); nil → the model answers.
    var override: ((RolloutMachine.Action, inout MachineSim) -> RolloutMachine.Input?)?
    // Invariants.
    var disrupted: Set<String> = []
    var servers: Set<String>
    var maxDisrupted = 0
    var maxServersDisrupted = 0
    var maxInFlight = 0
    var maxServersInFlight = 0
    var gatesWhileDisrupted = 0
    var gateRuns = 0
    /// A node started although a node was disrupted since the last passing gate run.
    var startsWhileUnverified = 0
    private var disruptedSinceGates = false
    /// Node starts (first action) and gate runs, in order: to check "gates before each new node".
    var events: [String] = []

    init(plan: RolloutPlan, seed: UInt64 = 0) {
        machine = RolloutMachine(plan: plan)
        self.seed = seed
        servers = Set(plan.nodes.filter(\.isServer).map(\.name))
        for n in plan.nodes { sim[n.name] = SimNode() }
    }

    var now: Date { RT.t0.addingTimeInterval(Double(clockTick)) }

    mutating func run(_ start: RolloutMachine.Start, maxSteps: Int = 10_000) {
        take(machine.start(start))
        var steps = 0
        while failure == nil && summary == nil && !outstanding.isEmpty && steps < maxSteps {
            steps += 1
            let i: Int
            if seed == 0 {
                i = 0
            } else {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                i = Int((seed >> 33) % UInt64(outstanding.count))
            }
            let action = outstanding.remove(at: i)
            clockTick += 1
            let input = override?(action, &self) ?? respond(action)
            take(machine.handle(input))
        }
    }

    mutating func take(_ actions: [RolloutMachine.Action]) {
        for a in actions {
            trace.append(a)
            switch a {
            case .notify(let n): messages.append(n.message)
            case .saveProgress(let p): saves.append(p)
            case .abort(let f): failure = f
            case .done(let s): summary = s
            case .runGates:
                gateRuns += 1
                events.append("gates")
                if !disrupted.isEmpty { gatesWhileDisrupted += 1 }
                outstanding.append(a)
            default:
                if let node = a.node, !events.contains("start \(node)") {
                    events.append("start \(node)")
                    if disruptedSinceGates { startsWhileUnverified += 1 }
                }
                if case .drain = a { disruptedSinceGates = true }
                if case .sendBundle(_, let b) = a, b.action == .switch { disruptedSinceGates = true }
                outstanding.append(a)
            }
        }
        let inFlight = machine.nodesInFlight
        maxInFlight = max(maxInFlight, inFlight.count)
        maxServersInFlight = max(maxServersInFlight, inFlight.filter { servers.contains($0) }.count)
    }

    func status(_ node: String) -> AgentStatus {
        let s = sim[node]!
        return RT.status(node, boot: s.boot, kernel: s.kernel, files: RT.files("new"))
    }

    mutating func respond(_ action: RolloutMachine.Action) -> RolloutMachine.Input {
        switch action {
        case .sendBundle(let node, let bundle):
            sim[node]!.serial += 1
            if bundle.upgrade { sim[node]!.kernel = sim[node]!.kernel }  // kernel changes at boot
            return .bundleAccepted(
                node: node,
                receipt: EnvelopeReceipt(serial: sim[node]!.serial, kind: "apply", operationID: "op-\(node)", phase: .staged, message: "ok"))
        case .waitRebuild(let node, _, _):
            return .rebuildFinished(node: node, outcome: .awaitingConfirm(bootIDAtRebuild: status(node).bootID), at: now)
        case .drain(let node):
            disrupted.insert(node)
            maxDisrupted = max(maxDisrupted, disrupted.count)
            maxServersDisrupted = max(maxServersDisrupted, disrupted.intersection(servers).count)
            return .drained(node: node, status: status(node))
        case .reboot(let node):
            sim[node]!.boot += 1
            return .rebootIssued(node: node)
        case .waitReachable(let node, _, _):
            return .agentReachable(node: node, status: status(node), at: now)
        case .waitReady(let node, _):
            return .nodeReady(node: node, at: now)
        case .uncordon(let node):
            disrupted.remove(node)
            return .uncordoned(node: node, wasOurs: true, at: now)
        case .runGates:
            disruptedSinceGates = false
            return .gatesPassed(at: now)
        case .confirm(let node, _):
            return .confirmed(node: node)
        case .notify, .saveProgress, .abort, .done:
            fatalError("not outstanding")
        }
    }
}

extension RolloutMachine.Action {
    /// The node a node action is for.
    var node: String? {
        switch self {
        case .sendBundle(let n, _), .waitRebuild(let n, _, _), .drain(let n), .reboot(let n), .waitReachable(let n, _, _),
            .waitReady(let n, _), .uncordon(let n), .confirm(let n, _):
            return n
        default: return nil
        }
    }
}
