import Foundation
import NK3Coordinator

/// Scenario `plan`: what `nk3 plan` does (`PlanCommand`: load the inventory, probe every agent, render every
/// node's files and diff them against what each agent has landed) on a `SimulatedCluster` at `.instant`, twice
/// per run: with nothing to change (every landed hash matches, no file is fetched) and after a template change
/// (every node's files are fetched from its agent and diffed).
extension FleetBench {
    func plan(into result: inout BenchScenarioResult, in dir: URL) async throws {
        let clock = ContinuousClock()
        var growth: [(Int, Double, Double)] = []
        for size in options.fleetSizes {
            let cluster = try await startCluster(nodes: size, in: dir.appendingPathComponent("plan-\(size)"))
            var same: [Double] = []
            var changed: [Double] = []
            var renderDiff: [Double] = []
            var handshakes: [Double] = []
            do {
                let templatePath = URL(fileURLWithPath: cluster.inventoryPath).deletingLastPathComponent()
                    .appendingPathComponent("template.nix.j2").path
                var yaml = try String(contentsOfFile: cluster.inventoryPath, encoding: .utf8)
                yaml += (yaml.hasSuffix("\n") ? "" : "\n") + "template: template.nix.j2\n"
                try yaml.write(toFile: cluster.inventoryPath, atomically: true, encoding: .utf8)
                let anchor = "  boot.kernelModules = [ \"rbd\" ];\n"
                guard DefaultTemplate.source.contains(anchor) else { throw BenchError("the default template changed shape") }
                // One unmeasured run: lazy initialisation of the process, not of `nk3 plan`.
                try DefaultTemplate.source.write(toFile: templatePath, atomically: true, encoding: .utf8)
                _ = try await planOnce(cluster, nodes: size, expectChanged: false)
                for run in 0..<options.statusRuns {
                    try DefaultTemplate.source.write(toFile: templatePath, atomically: true, encoding: .utf8)
                    let t0 = clock.now
                    _ = try await planOnce(cluster, nodes: size, expectChanged: false)
                    same.append(t0.duration(to: clock.now).milliseconds)

                    let edited = DefaultTemplate.source.replacingOccurrences(
                        of: anchor, with: anchor + "  # nk3 bench plan \(run + 1)\n")
                    try edited.write(toFile: templatePath, atomically: true, encoding: .utf8)
                    let t1 = clock.now
                    let connections = cluster.members.reduce(0) { $0 + $1.agentConnections }
                    let part = try await planOnce(cluster, nodes: size, expectChanged: true)
                    changed.append(t1.duration(to: clock.now).milliseconds)
                    renderDiff.append(part)
                    handshakes.append(
                        Double(cluster.members.reduce(0) { $0 + $1.agentConnections } - connections) / Double(size))
                }
            } catch {
                await cluster.shutdown()
                throw error
            }
            await cluster.shutdown()
            let big = size >= 1000
            result.figures.append(BenchFigure("\(size) nodes, nothing to change: load + probe + plan", unit: "ms", samples: same))
            result.figures.append(
                BenchFigure(
                    "\(size) nodes, every node changed: load + probe + plan", unit: "ms", samples: changed,
                    target: big ? "≤ 2000 ms" : nil, met: big ? { $0 <= 2000 } : nil))
            result.figures.append(
                BenchFigure("\(size) nodes, every node changed: plan() alone (render, fetch, diff)", unit: "ms", samples: renderDiff))
            result.notes.append(
                "\(size) nodes, every node changed: agent mTLS handshakes per node (status probe and file fetch share "
                    + "the session's kept connection): "
                    + handshakes.map { String(format: "%.2f", $0) }.joined(separator: ", "))
            growth.append(
                (size, BenchFigure("", unit: "", samples: same).median / Double(size),
                    BenchFigure("", unit: "", samples: changed).median / Double(size)))
        }
        result.notes.append(
            "growth per node (nothing to change / every node changed): "
                + growth.map { "\($0.0) → \(String(format: "%.2f", $0.1)) / \(String(format: "%.2f", $0.2)) ms" }
                .joined(separator: ", "))
        result.notes.append("the agents run in this process: the wall time includes their side of every request")
    }

    /// One `nk3 plan`; returns the milliseconds of `plan(statuses:)` alone.
    private func planOnce(_ cluster: SimulatedCluster, nodes: Int, expectChanged: Bool) async throws -> Double {
        let clock = ContinuousClock()
        let session = try ClusterSession.load(inventoryPath: cluster.inventoryPath, logger: logger)
        let statuses = try await session.preflight(sink: NullEventSink(), announce: false)
        let t0 = clock.now
        let (_, plans) = try await session.plan(statuses: statuses)
        let ms = t0.duration(to: clock.now).milliseconds
        let changed = plans.filter(\.needsApply).count
        guard plans.count == nodes, changed == (expectChanged ? nodes : 0) else {
            throw BenchError("plan of \(nodes) nodes: \(plans.count) plans, \(changed) with changes (expected \(expectChanged ? nodes : 0))")
        }
        return ms
    }
}
