import Foundation
import Logging
import NK3Coordinator

/// Scenario `critical`: an apply(.boot) rollout on a `SimulatedCluster` whose machines take realistic SIMULATED
/// durations (rebuild 60 s, reboot 90 s, kubelet Ready 30 s after boot, pods 20 s after that), run faster than
/// real time by `criticalSpeed`, against its critical path: Σ over batches of the slowest node's rebuild + drain
/// + reboot + ready + gates. Every node of the simulation takes the same durations, so a batch's critical path
/// is rebuild + reboot + ready + pod start-up (the gates wait for the node's DaemonSet pods, which start
/// `podStartup` after Ready) + the batch's slowest drain as measured from the events. Batches are read from the
/// rollout's events: nodes whose send-to-uncordon event intervals overlap form one batch.
struct CriticalPathBench {
    let options: BenchRunner.Options
    let logger: Logger

    /// The durations the issue names, in simulated seconds.
    static var timings: SimulatedTimings {
        var t = SimulatedTimings()
        t.rebuild = 60
        t.rebuildNothingToBuild = 60
        t.activation = 0  // part of the 60 s rebuild here (boot mode only installs the boot entry)
        t.rebootDowntime = 90
        t.kubeletReadyAfterBoot = 30
        t.podStartup = 20
        return t
    }

    /// Simulated seconds of one batch's critical path.
    static var batchSeconds: Double {
        let t = timings
        return t.rebuild + t.activation + t.rebootDowntime + t.kubeletReadyAfterBoot + t.podStartup
    }

    func run(into result: inout BenchScenarioResult, in dir: URL) async throws {
        let speed = options.criticalFactor
        let nodes = options.criticalNodes
        for budget in options.criticalBudgets {
            var ratios: [Double] = []
            var excess: [Double] = []
            var batchCounts: [Double] = []
            var simulatedWall: [Double] = []
            var drainPerBatch: [Double] = []
            var o = SimulatedCluster.Options()
            o.announce = false
            o.timings = Self.timings
            o.agentRebootDelay = FleetBench.agentRebootDelay
            let cluster = try await SimulatedCluster.start(
                nodes: nodes, speed: .factor(speed), in: dir.appendingPathComponent("critical-b\(budget)"), options: o,
                logger: logger)
            do {
                let templatePath = try FleetBench.prepareRolloutInventory(cluster, ceph: false)
                for run in 0..<options.criticalRuns {
                    options.progress("bench: critical: \(nodes) nodes, budget \(budget), speed \(speed)x, run \(run + 1)")
                    try FleetBench.changeTemplate(at: templatePath, revision: run + 1)
                    await cluster.settleAgents()
                    let session = try ClusterSession.load(
                        inventoryPath: cluster.inventoryPath, overrides: cluster.sessionOverrides, logger: logger)
                    let sink = CollectingEventSink()
                    let clock = ContinuousClock()
                    let t0 = clock.now
                    let summary = try await session.rollout(
                        .apply(.boot), options: RolloutPlan.Options(disruptionBudget: budget), sink: sink, clock: clock)
                    let wall = t0.duration(to: clock.now).milliseconds / 1000
                    guard summary.updated.count == nodes else {
                        throw BenchError("critical-path rollout updated \(summary.updated.count) of \(nodes) nodes")
                    }
                    let drains = Self.batches(sink.events)
                    let batches = drains.count
                    // Simulated seconds: the machines' durations plus each batch's slowest drain.
                    let critical = Double(batches) * Self.batchSeconds + drains.reduce(0, +) * speed
                    drainPerBatch.append(drains.reduce(0, +) * speed / Double(max(1, batches)))
                    let simulated = wall * speed
                    ratios.append(simulated / critical)
                    excess.append((simulated - critical) / Double(batches))
                    batchCounts.append(Double(batches))
                    simulatedWall.append(simulated)
                }
            } catch {
                await cluster.shutdown()
                throw error
            }
            await cluster.shutdown()
            result.figures.append(
                BenchFigure(
                    "\(nodes) nodes, budget \(budget): rollout ÷ critical path", unit: "x", samples: ratios,
                    target: "≤ 1.01", met: { $0 <= 1.01 }))
            result.figures.append(
                BenchFigure("\(nodes) nodes, budget \(budget): rollout time (simulated)", unit: "s", samples: simulatedWall))
            result.figures.append(
                BenchFigure("\(nodes) nodes, budget \(budget): batches", unit: "", samples: batchCounts))
            result.figures.append(
                BenchFigure("\(nodes) nodes, budget \(budget): slowest drain per batch (simulated)", unit: "s", samples: drainPerBatch))
            result.figures.append(
                BenchFigure(
                    "\(nodes) nodes, budget \(budget): time over the critical path per batch (simulated)", unit: "s",
                    samples: excess))
        }
        let t = Self.timings
        result.notes.append(
            "SIMULATED durations per node: rebuild \(Int(t.rebuild)) s, reboot \(Int(t.rebootDowntime)) s, kubelet Ready "
                + "\(Int(t.kubeletReadyAfterBoot)) s after boot, pods \(Int(t.podStartup)) s after Ready; critical path "
                + "per batch \(Int(Self.batchSeconds)) s + the batch's slowest drain (measured: drain event to reboot event); run at \(BenchReport.format(speed))× real time, so every real "
                + "millisecond of coordinator work and polling counts \(BenchReport.format(speed)) ms of simulated time")
        result.notes.append(
            "a real-time fleet pays the same real overhead against 1× durations: projected ratio = 1 + (time over the "
                + "critical path per batch) ÷ \(BenchReport.format(speed)) ÷ \(Int(Self.batchSeconds)) s")
        result.notes.append(
            "batches: nodes whose send-to-uncordon events overlap; 3 k3s servers (one at a time whatever the "
                + "budget); Ceph gate off (Rook's whole-second lastChecked, see the rollout scenario)")
    }

    /// Groups nodes into batches (a node whose first event comes after every earlier node's last event starts a
    /// new one) and returns, per batch, its slowest node's drain in real seconds: from the node's first drain event
    /// to its first reboot event (the simulation's PodDisruptionBudgets can hold evictions until replacement pods
    /// are Ready, so the drain is measured, not assumed).
    static let nodeSteps: Set<RolloutPhase> = [.send, .rebuild, .drain, .reboot, .reachable, .ready, .uncordon]

    static func batches(_ events: [RolloutEvent]) -> [Double] {
        var span: [String: (Date, Date)] = [:]
        var drainStart: [String: Date] = [:]
        var rebootStart: [String: Date] = [:]
        for e in events {
            // A node's own disruption steps only: probe, lease, confirm and gate events can span the whole rollout.
            guard let node = e.node, Self.nodeSteps.contains(e.phase) else { continue }
            if let s = span[node] {
                span[node] = (min(s.0, e.timestamp), max(s.1, e.timestamp))
            } else {
                span[node] = (e.timestamp, e.timestamp)
            }
            if e.phase == .drain, drainStart[node] == nil { drainStart[node] = e.timestamp }
            if e.phase == .reboot, rebootStart[node] == nil { rebootStart[node] = e.timestamp }
        }
        var drains: [Double] = []
        var end = Date.distantPast
        for (node, s) in span.sorted(by: { $0.value.0 < $1.value.0 }) {
            if s.0 > end { drains.append(0) }
            end = max(end, s.1)
            if let a = drainStart[node], let b = rebootStart[node] {
                drains[drains.count - 1] = max(drains[drains.count - 1], b.timeIntervalSince(a))
            }
        }
        return drains
    }
}
