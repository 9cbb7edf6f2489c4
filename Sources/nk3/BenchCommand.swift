import ArgumentParser
import Foundation
import NK3Coordinator
import NK3Simulation

/// `nk3 bench`: the benchmarks behind BENCHMARKS.md, each figure beside its target, in one command (run it from a
/// release build).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure nk3 against its design targets on SIMULATED clusters; print a table, write JSON.",
        discussion: """
            Scenarios: \(BenchScenario.allCases.map(\.rawValue).joined(separator: ", ")). Each figure is the median \
            of repeated runs with [min … max]. Run it from a release build (scripts/bench.sh builds and runs it); \
            a debug build says so in the table. See BENCHMARKS.md for what each scenario measures and why.
            """)

    @Flag(help: "Tiny sizes and repetitions (a smoke run; the figures mean nothing).")
    var quick = false

    @Option(help: "Also write the report as JSON to this path.")
    var json: String?

    @Option(name: .customLong("scenario"), parsing: .upToNextOption, help: "Scenarios to run (default: all).")
    var scenarios: [String] = []

    @Option(help: "Fleet sizes for status, plan and rollout, comma-separated (default 10,100,1000).")
    var sizes: String?

    @Option(help: "Repetitions of each rollout row (default 3; 1 with --quick). A 1,000-node row takes minutes per run.")
    var rolloutRuns: Int?

    @Option(help: "How many times faster than real time the critical-path scenario runs its simulated durations (default 200).")
    var criticalSpeed: Double?

    @Option(help: "The nk3-agent executable (default: next to this nk3).")
    var agentBinary: String?

    @Option(help: "kubectl to compare with (a name on PATH or a path).")
    var kubectl: String = "kubectl"

    func validate() throws {
        if let rolloutRuns, !(1...50).contains(rolloutRuns) {
            throw ValidationError("--rollout-runs takes a number between 1 and 50")
        }
        if let sizes, sizes.split(separator: ",").contains(where: { Int($0).map { !(1...5000).contains($0) } ?? true }) {
            throw ValidationError("--sizes takes comma-separated node counts between 1 and 5000, e.g. 10,100,1000")
        }
        if let criticalSpeed, !(criticalSpeed >= 1 && criticalSpeed <= 100_000) {
            throw ValidationError("--critical-speed takes a factor between 1 and 100000")
        }
        for s in scenarios where BenchScenario(rawValue: s) == nil {
            throw ValidationError(
                "unknown scenario '\(s)'; scenarios are \(BenchScenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        LoggingBootstrap.once(level: .error)
        var options = BenchRunner.Options()
        options.quick = quick
        if !scenarios.isEmpty { options.scenarios = scenarios.compactMap(BenchScenario.init(rawValue:)) }
        options.kubectl = kubectl
        options.criticalSpeed = criticalSpeed
        options.rolloutRunsOverride = rolloutRuns
        options.fleetSizesOverride = sizes.map { $0.split(separator: ",").compactMap { Int($0) } }
        options.agentBinary = agentBinary ?? Self.siblingAgent()
        options.nk3Binary = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let stderr = FileDescriptorWriter(fd: 2)
        options.progress = { stderr.write($0 + "\n") }
        let report = await BenchRunner(options: options).run()
        print(report.table())
        if let json {
            try report.json().write(to: URL(fileURLWithPath: json))
            print("\nJSON written to \(json)")
        }
        if report.scenarios.contains(where: { $0.error != nil }) { throw ExitCode(1) }
    }

    /// `nk3-agent` in the directory of this executable (SwiftPM puts both products there).
    static func siblingAgent() -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map(URL.init(fileURLWithPath:)) ?? me
        return exe.deletingLastPathComponent().appendingPathComponent("nk3-agent").path
    }
}
