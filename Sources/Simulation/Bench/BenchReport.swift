import Foundation

/// One measured figure: the median of repeated runs, with the smallest and largest.
public struct BenchFigure: Codable, Sendable, Hashable {
    /// What was measured, e.g. `probe wall time (nk3)`.
    public var name: String
    /// Unit of `median`, `min`, `max`: `ms`, `MiB`, `x`, `s`, …
    public var unit: String
    /// Median over the samples.
    public var median: Double
    /// Smallest sample.
    public var min: Double
    /// Largest sample.
    public var max: Double
    /// Number of samples.
    public var samples: Int
    /// The design target this figure is held against (human text, e.g. `≤ 0.5 s`), if any.
    public var target: String?
    /// Whether the median meets the target (nil: no target).
    public var met: Bool?

    /// Summarises `samples` (must not be empty).
    public init(_ name: String, unit: String, samples values: [Double], target: String? = nil, met: ((Double) -> Bool)? = nil) {
        let sorted = values.sorted()
        self.name = name
        self.unit = unit
        self.samples = sorted.count
        self.min = sorted.first ?? .nan
        self.max = sorted.last ?? .nan
        if sorted.isEmpty {
            self.median = .nan
        } else if sorted.count % 2 == 1 {
            self.median = sorted[sorted.count / 2]
        } else {
            self.median = (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        self.target = target
        self.met = met.map { $0(self.median) }
    }
}

/// The outcome of one scenario.
public struct BenchScenarioResult: Codable, Sendable, Hashable {
    /// Scenario id (`probe`, `status`, …).
    public var scenario: String
    /// Human title.
    public var title: String
    /// Figures, in display order.
    public var figures: [BenchFigure] = []
    /// Remarks: what was subtracted, what could not be measured, what a figure includes.
    public var notes: [String] = []
    /// Set when the scenario did not run (e.g. `kubectl not found`), with the reason.
    public var skipped: String?
    /// Set when the scenario failed part-way, with the error.
    public var error: String?

    /// An empty result for `scenario`.
    public init(scenario: BenchScenario) {
        self.scenario = scenario.rawValue
        self.title = scenario.title
    }
}

/// The machine a report was measured on.
public struct BenchMachine: Codable, Sendable, Hashable {
    /// Online CPUs (`nproc`).
    public var cpus: Int
    /// CPU model from /proc/cpuinfo.
    public var cpuModel: String
    /// MemTotal from /proc/meminfo, in MiB.
    public var memoryMiB: Int
    /// Kernel release.
    public var kernel: String
    /// Whether the binary was built with optimisation (`-c release`).
    public var optimized: Bool

    /// Reads the current machine.
    public static func current() -> BenchMachine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let kb = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
        let kernel = ((try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)) ?? "unknown")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #if DEBUG
        let optimized = false
        #else
        let optimized = true
        #endif
        return BenchMachine(
            cpus: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model, memoryMiB: kb / 1024,
            kernel: kernel, optimized: optimized)
    }
}

/// Everything one `nk3 bench` run measured.
public struct BenchReport: Codable, Sendable, Hashable {
    /// When the run started.
    public var started: Date
    /// Whether `--quick` sizes were used (smoke run: figures are not meaningful).
    public var quick: Bool
    /// Where it ran.
    public var machine: BenchMachine
    /// One entry per scenario run, in order.
    public var scenarios: [BenchScenarioResult]

    /// JSON (pretty, sorted keys, ISO 8601 dates).
    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.dateEncodingStrategy = .iso8601
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(self)
    }

    /// The human table: one line per figure, `median [min … max]`, target and verdict.
    public func table() -> String {
        var lines: [String] = []
        lines.append(
            "nk3 bench — \(quick ? "QUICK (smoke sizes; figures not meaningful)" : "full run"), "
                + "\(machine.optimized ? "release build" : "DEBUG build (figures not meaningful)")")
        lines.append("machine: \(machine.cpus) CPU(s), \(machine.cpuModel), \(machine.memoryMiB) MiB RAM, Linux \(machine.kernel)")
        let nameWidth = max(44, scenarios.flatMap(\.figures).map(\.name.count).max() ?? 0)
        for s in scenarios {
            lines.append("")
            lines.append("== \(s.scenario): \(s.title)")
            if let skipped = s.skipped { lines.append("   skipped: \(skipped)") }
            for f in s.figures {
                let value = "\(Self.format(f.median)) \(f.unit)".padding(toLength: 14, withPad: " ", startingAt: 0)
                let range = "[\(Self.format(f.min)) … \(Self.format(f.max))] n=\(f.samples)"
                    .padding(toLength: 28, withPad: " ", startingAt: 0)
                var verdict = ""
                if let target = f.target {
                    verdict = "target \(target)" + (f.met.map { $0 ? "  MET" : "  MISSED" } ?? "")
                }
                lines.append("   \(f.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)) \(value) \(range) \(verdict)")
            }
            for n in s.notes { lines.append("   note: \(n)") }
            if let e = s.error { lines.append("   ERROR: \(e)") }
        }
        return lines.joined(separator: "\n")
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "n/a" }
        let a = abs(v)
        if a >= 1000 { return String(format: "%.0f", v) }
        if a >= 100 { return String(format: "%.1f", v) }
        if a >= 1 { return String(format: "%.2f", v) }
        if a >= 0.01 { return String(format: "%.3f", v) }
        return String(format: "%.4f", v)
    }
}
