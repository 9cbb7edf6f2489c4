#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Protocol
import Prometheus

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
