import Foundation
import NK3Simulation
import Testing

/// `nk3 bench --quick` through the library, so the benchmarks cannot rot: every scenario runs at tiny sizes
/// and the report has the expected shape. Never asserts on timings (benchmarks, not timed tests).
@Suite("nk3 bench smoke run", .serialized, .timeLimit(.minutes(5)))
struct BenchSmokeTests {
    /// The `nk3-agent` binary next to the test bundle or in .build/debug; nil if not built.
    static var agentBinary: String? {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidates = [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("nk3-agent").path }
        candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/nk3-agent")
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test("every scenario runs at quick sizes and reports median/min/max figures; JSON round-trips")
    func quickRun() async throws {
        var options = BenchRunner.Options()
        options.quick = true
        options.agentBinary = Self.agentBinary
        let report = await BenchRunner(options: options).run()

        #expect(report.quick)
        #expect(report.scenarios.map(\.scenario) == BenchScenario.allCases.map(\.rawValue))
        for s in report.scenarios {
            #expect(s.error == nil, "scenario \(s.scenario) failed: \(s.error ?? "")")
            if s.skipped == nil || s.scenario == "probe" {
                #expect(!s.figures.isEmpty, "scenario \(s.scenario) reported no figures")
            }
            for f in s.figures {
                #expect(f.samples >= 1, "\(s.scenario): \(f.name)")
                #expect(f.min <= f.median && f.median <= f.max, "\(s.scenario): \(f.name) \(f.min) \(f.median) \(f.max)")
                #expect(f.min >= 0, "\(s.scenario): \(f.name)")
                #expect((f.target == nil) == (f.met == nil), "\(s.scenario): \(f.name)")
            }
        }
        let byName = Dictionary(uniqueKeysWithValues: report.scenarios.map { ($0.scenario, $0) })
        // Scenario shapes: the figures each scenario promises.
        #expect(byName["probe"]?.figures.contains { $0.name.hasPrefix("nk3 KubeClient GET: wall") } == true)
        #expect(byName["status"]?.figures.contains { $0.name == "3 agents: load + probeAll" } == true)
        #expect(byName["rollout"]?.figures.contains { $0.name.contains("3 nodes, budget 1: wall per node") } == true)
        #expect(byName["rollout"]?.figures.contains { $0.name.contains("budget 2") } == true)
        #expect(byName["rollout"]?.figures.contains { $0.name.contains("agent mTLS handshakes per node") && $0.median > 0 } == true)
        #expect(byName["plan"]?.figures.contains { $0.name == "3 nodes, every node changed: load + probe + plan" } == true)
        #expect(byName["plan"]?.figures.contains { $0.name == "3 nodes, nothing to change: load + probe + plan" } == true)
        // The critical-path ratio can only be ≥ 1 (nothing beats the simulated durations), and each budget counts
        // its batches from the rollout's events: at least one per k3s server (one server at a time).
        for budget in [1, 2] {
            let ratio = byName["critical"]?.figures.first { $0.name == "4 nodes, budget \(budget): rollout ÷ critical path" }
            #expect(ratio.map { $0.min >= 1 } == true, "budget \(budget): \(String(describing: ratio))")
            let batches = byName["critical"]?.figures.first { $0.name == "4 nodes, budget \(budget): batches" }
            #expect(batches.map { $0.min >= 3 && $0.max <= 4 } == true, "budget \(budget): \(String(describing: batches))")
        }
        #expect(report.scenarios.allSatisfy { $0.notes.contains { $0.contains("peak RSS") } })
        #expect(byName["gate"]?.figures.first?.samples == 3)
        #expect(byName["envelope"]?.figures.first?.samples == 20)
        if let agent = byName["agent"] {
            if Self.agentBinary == nil {
                #expect(agent.skipped != nil)
            } else {
                #expect(agent.figures.contains { $0.name == "RSS at idle after start" && $0.median > 1 })
            }
        }

        let json = try report.json()
        let back = try JSONDecoder.iso8601().decode(BenchReport.self, from: json)
        #expect(back.scenarios.count == report.scenarios.count)
        #expect(report.table().contains("== envelope:"))
    }

    @Test("a missing agent binary is reported as skipped, not as an error")
    func missingAgentBinary() async throws {
        var options = BenchRunner.Options()
        options.quick = true
        options.scenarios = [.agent, .envelope]
        options.agentBinary = "/nonexistent/nk3-agent"
        let report = await BenchRunner(options: options).run()
        #expect(report.scenarios.map(\.scenario) == ["agent", "envelope"])
        #expect(report.scenarios[0].skipped?.contains("not found") == true)
        #expect(report.scenarios[0].error == nil)
    }
}

extension JSONDecoder {
    fileprivate static func iso8601() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }
}
