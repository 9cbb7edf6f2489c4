#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol
import Prometheus
import Synchronization

/// Durable home of the apply state machine: one JSON file in the state directory, written atomically
/// (temp + fsync + rename + fsync dir) before every side effect.
struct ApplyStateStore: Sendable {
    private struct File: Codable {
        var version: Int
        var state: ApplyMachine.State
    }

    let path: String

    init(stateDir: String) {
        path = "\(stateDir)/apply-state.json"
    }

    func load() throws -> ApplyMachine.State {
        guard SecureFiles.exists(path) else { return ApplyMachine.State() }
        do {
            let data = try SecureFiles.read(path)
            let file = try CanonicalJSON.decode(File.self, from: data)
            guard file.version == 1 else {
                throw WireError(.internalError, "\(path) has version \(file.version); this agent reads version 1")
            }
            return file.state
        } catch let e as WireError {
            throw e
        } catch {
            // Never silently forget an apply in flight: refuse to start and say what to do.
            throw WireError(
                .internalError,
                "cannot read the apply state \(path): \(StrictJSON.describe(error)). Inspect it; moving it away "
                    + "makes the agent forget any apply in progress (check /etc/nixos and the system profile by hand)")
        }
    }

    func save(_ state: ApplyMachine.State) throws {
        let data = try CanonicalJSON.encode(File(version: 1, state: state))
        try SecureFiles.writeAtomically(data, to: path, permissions: 0o600)
    }
}

/// Bounded per-operation log tails, appended from process reader threads.
final class OperationLogs: Sendable {
    private struct Log {
        var lines: [String] = []
        var bytes = 0
        var dropped = 0
    }

    private let logs = Mutex<(order: [String], byID: [String: Log])>(([], [:]))
    let maxOperations: Int
    let maxBytes: Int

    init(maxOperations: Int = 16, maxBytes: Int = 32 * 1024) {
        self.maxOperations = maxOperations
        self.maxBytes = maxBytes
    }

    func append(_ id: String, _ line: String) {
        logs.withLock { l in
            if l.byID[id] == nil {
                l.order.append(id)
                l.byID[id] = Log()
                if l.order.count > maxOperations { l.byID[l.order.removeFirst()] = nil }
            }
            var log = l.byID[id]!
            let clipped = line.count > 4096 ? String(line.prefix(4096)) + "…" : line
            log.lines.append(clipped)
            log.bytes += clipped.utf8.count + 1
            while log.bytes > maxBytes, !log.lines.isEmpty {
                log.bytes -= log.lines.removeFirst().utf8.count + 1
                log.dropped += 1
            }
            l.byID[id] = log
        }
    }

    func tail(_ id: String) -> String? {
        logs.withLock { l in
            guard let log = l.byID[id] else { return nil }
            let head = log.dropped > 0 ? "… [\(log.dropped) earlier lines omitted]\n" : ""
            return head + log.lines.joined(separator: "\n")
        }
    }
}

/// The agent's Prometheus metrics (one registry per engine, so several engines can share a process).
final class EngineMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let generation: Gauge
    let bootedGeneration: Gauge
    let rollbacks: Counter
    let lastResultTimestamp: Gauge
    let lastResult: [OperationResult.Outcome: Gauge]
    let outcomes: [OperationResult.Outcome: Counter]
    let applyDuration: ValueHistogram
    let applyInProgress: Gauge

    static let allOutcomes: [OperationResult.Outcome] = [.unchanged, .committed, .failed, .rolledBack, .rebooted]

    init() {
        generation = registry.makeGauge(descriptor: Self.metric("nk3_agent_system_generation", "Generation number the system profile points at"))
        bootedGeneration = registry.makeGauge(descriptor: Self.metric("nk3_agent_booted_generation", "Generation number of the booted system (-1 if unknown)"))
        rollbacks = registry.makeCounter(descriptor: Self.metric("nk3_agent_rollbacks_total", "Applies rolled back (deadline passed or rollback requested)"))
        lastResultTimestamp = registry.makeGauge(descriptor: Self.metric("nk3_agent_last_result_timestamp_seconds", "When the last operation finished (unix time)"))
        var last: [OperationResult.Outcome: Gauge] = [:]
        var counts: [OperationResult.Outcome: Counter] = [:]
        for o in Self.allOutcomes {
            last[o] = registry.makeGauge(descriptor: Self.metric("nk3_agent_last_result", "1 for the outcome of the last finished operation, 0 for the others"), labels: [("outcome", o.rawValue)])
            counts[o] = registry.makeCounter(descriptor: Self.metric("nk3_agent_operations_total", "Finished operations by outcome (since agent start)"), labels: [("outcome", o.rawValue)])
        }
        lastResult = last
        outcomes = counts
        applyDuration = registry.makeValueHistogram(descriptor: Self.metric("nk3_agent_apply_duration_seconds", "Time from accepting an apply to its final outcome"), buckets: [10, 30, 60, 120, 300, 600, 1200, 3600, 7200])
        applyInProgress = registry.makeGauge(descriptor: Self.metric("nk3_agent_apply_in_progress", "1 while an apply is in flight (including awaiting confirm)"))
    }

    /// A metric name without unit suffix (the names above already end in their unit).
    static func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    func record(_ result: OperationResult, duration: TimeInterval?, countOutcome: Bool = true) {
        for (o, g) in lastResult { g.set(to: o == result.outcome ? 1.0 : 0.0) }
        lastResultTimestamp.set(result.finishedAt.timeIntervalSince1970)
        if countOutcome { outcomes[result.outcome]?.increment() }
        if let duration, result.outcome != .rebooted { applyDuration.record(max(0, duration)) }
    }
}
