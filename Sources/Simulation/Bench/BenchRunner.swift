import Foundation
import Logging

/// Runs the benchmark scenarios of `nk3 bench` in process (the smoke test calls it with `.quick`).
///
/// Every scenario measures repeated runs and reports each figure as median [min … max]. Scenarios that need
/// an outside program (`kubectl`, the `nk3-agent` binary) report why they were skipped when it is missing.
/// Nothing here is a pass/fail test: targets are shown next to the figures.
public struct BenchRunner: Sendable {
    /// Sizes and paths.
    public struct Options: Sendable {
        /// Tiny sizes and repetitions (smoke runs; the figures mean nothing).
        public var quick = false
        /// Scenarios to run, in `BenchScenario` order.
        public var scenarios: [BenchScenario] = BenchScenario.allCases
        /// `kubectl` to compare with (a name looked up on PATH, or a path).
        public var kubectl = "kubectl"
        /// The `nk3-agent` executable for the footprint scenario (nil: skip it).
        public var agentBinary: String?
        /// The nk3 executable, for the rollout rows that run `nk3 apply` as its own process (nil: skipped).
        public var nk3Binary: String?
        /// `strip` for the stripped-size figure (looked up on PATH).
        public var strip = "strip"
        /// Where scenarios write their scratch files (a new directory under it per run; removed afterwards).
        public var workDirectory = URL(fileURLWithPath: NSTemporaryDirectory())
        /// Fleet sizes for `status`, `plan` and `rollout` instead of 10, 100, 1,000 (the budget runs use the largest).
        public var fleetSizesOverride: [Int]?
        /// Repetitions of each rollout row instead of 3 (1,000-node rows take minutes per run).
        public var rolloutRunsOverride: Int?
        /// Progress lines (stderr in the CLI).
        public var progress: @Sendable (String) -> Void = { _ in }

        /// Defaults: the full run of every scenario.
        public init() {}

        // Sizes (full / quick).
        var probeRuns: Int { quick ? 5 : 300 }
        var kubectlRuns: Int { quick ? 2 : 15 }
        var fleetSizes: [Int] { fleetSizesOverride ?? (quick ? [3] : [10, 100, 1000]) }
        var statusRuns: Int { quick ? 2 : 7 }
        var rolloutSizes: [Int] { fleetSizesOverride ?? (quick ? [3] : [10, 100, 1000]) }
        var rolloutRuns: Int { rolloutRunsOverride ?? (quick ? 1 : 3) }
        var budgets: [Int] { quick ? [1, 2] : [1, 10] }
        /// Simulated time runs this many times faster than real time in the `critical` scenario.
        /// (nil: 200, or 2,000 with `quick`).
        public var criticalSpeed: Double?
        var criticalFactor: Double { criticalSpeed ?? (quick ? 2000 : 200) }
        var criticalNodes: Int { quick ? 4 : 100 }
        var criticalBudgets: [Int] { quick ? [1, 2] : [1, 10] }
        var criticalRuns: Int { quick ? 1 : 3 }
        var gateRuns: Int { quick ? 3 : 30 }
        var agentRequests: Int { quick ? 40 : 1000 }
        var agentIdleSeconds: Double { quick ? 0.5 : 10 }
        var envelopeRuns: Int { quick ? 20 : 2000 }
        var renderNodes: Int { quick ? 20 : 1000 }
        var renderRuns: Int { quick ? 1 : 5 }
    }

    /// What to run.
    public var options: Options
    /// Logger handed to the simulations (quiet by default: a no-op handler).
    public var logger: Logger

    /// Makes a runner.
    public init(options: Options, logger: Logger = Logger(label: "nk3.bench", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.options = options
        self.logger = logger
    }

    /// Runs the chosen scenarios one after the other. A scenario that fails records its error and the run goes on.
    public func run() async -> BenchReport {
        var report = BenchReport(started: Date(), quick: options.quick, machine: .current(), scenarios: [])
        let base = options.workDirectory.appendingPathComponent("nk3-bench-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        for scenario in BenchScenario.allCases where options.scenarios.contains(scenario) {
            options.progress("bench: \(scenario.rawValue): \(scenario.title) …")
            let dir = base.appendingPathComponent(scenario.rawValue)
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var result = BenchScenarioResult(scenario: scenario)
            let started = ContinuousClock.now
            do {
                switch scenario {
                case .probe: try await ProbeBench(options: options, logger: logger).run(into: &result, in: dir)
                case .status: try await FleetBench(options: options, logger: logger).status(into: &result, in: dir)
                case .plan: try await FleetBench(options: options, logger: logger).plan(into: &result, in: dir)
                case .critical: try await CriticalPathBench(options: options, logger: logger).run(into: &result, in: dir)
                case .rollout: try await FleetBench(options: options, logger: logger).rollout(into: &result, in: dir)
                case .gate: try await GateBench(options: options, logger: logger).run(into: &result)
                case .agent: try await AgentBench(options: options, logger: logger).run(into: &result, in: dir)
                case .envelope: try EnvelopeBench(options: options).run(into: &result)
                case .render: try RenderBench(options: options).run(into: &result)
                }
            } catch {
                result.error = "\(error)"
            }
            result.notes.append(
                "this process's peak RSS after this scenario (ru_maxrss; it also holds every simulated agent, machine "
                    + "and the fake API): \(String(format: "%.1f", Double(BenchProcess.selfPeakRSSKiB()) / 1024)) MiB")
            options.progress("bench: \(scenario.rawValue) done in \(String(format: "%.1f", started.duration(to: .now).milliseconds / 1000)) s")
            report.scenarios.append(result)
        }
        return report
    }
}
