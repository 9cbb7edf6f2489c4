import Foundation

/// A rollout's event log turned into bars on a time axis: one row per node, one bar per phase the node went
/// through, the cluster-wide health gate runs on a row of their own, the time spent waiting (gates that had to
/// wait for the cluster to recover, a closed maintenance window, a firing alert) and the failures. Pure: the
/// same events give the same timeline; `RolloutReport` draws it.
///
/// A node's events mark the edges of its phases: a `started` event opens its phase ("Draining X" opens
/// `drain`), any other event closes the phase it names ("X is reachable" closes the wait for the agent after
/// the reboot, `reachable`). What follows until the node's `confirm` event ("Confirmed apply N on X") is its
/// gates-and-confirm bar (`gates`), and the confirm is marked at its end. Logs written before nk3 logged the
/// confirm have no such event: there the bar ends when the next gate run has passed.
public struct RolloutTimeline: Sendable, Hashable {
    /// One bar: a row (node, or `clusterRow`), a phase, and when.
    public struct Bar: Sendable, Hashable {
        public var row: String
        public var phase: RolloutPhase
        public var start: Date
        public var end: Date
        /// The phase ended in a failure.
        public var failed: Bool
        /// The events' messages inside the bar (its tooltip).
        public var detail: [String]
        /// For a gate run that had to wait for the cluster: when its first waiting line came.
        public var waitStart: Date? = nil
        /// The bar's length.
        public var duration: TimeInterval { end.timeIntervalSince(start) }
    }

    /// Something at one instant on a row: a failure, a confirm.
    public struct Mark: Sendable, Hashable {
        public var row: String
        public var at: Date
        public var message: String
    }
    /// A failure at one instant.
    public typealias Failure = Mark

    /// The row of events about no node (the health gates).
    public static let clusterRow = "cluster gates"
    /// Phases that hold a node back before it starts or a gate run from passing: their time is waiting.
    public static let waitPhases: Set<RolloutPhase> = [.window, .alerts]

    /// First and last event.
    public var start: Date
    public var end: Date
    /// Rows in the order nodes first appear; `clusterRow` last when there were gate runs.
    public var rows: [String]
    /// The phase bars, in time order per row.
    public var bars: [Bar]
    /// Time spent waiting: gate runs that waited for the cluster, holds before a node started.
    public var waits: [Bar]
    /// Failures.
    public var failures: [Failure]
    /// The coordinator's confirms of nodes' applies (none in a log written before they were logged).
    public var confirms: [Mark] = []

    /// The bars drawn for the nodes (not the cluster row).
    public var nodeBars: [Bar] { bars.filter { $0.row != Self.clusterRow } }

    /// Builds the timeline of `events` (in log order).
    public static func build(_ events: [RolloutEvent]) -> RolloutTimeline {
        let t0 = events.first?.timestamp ?? Date(timeIntervalSince1970: 0)
        let t1 = events.last?.timestamp ?? t0
        var rows: [String] = []
        var byNode: [String: [RolloutEvent]] = [:]
        var failures: [Failure] = []
        for e in events {
            if e.status == .failed { failures.append(.init(row: e.node ?? clusterRow, at: e.timestamp, message: e.message)) }
            // Gate lines belong to the cluster's gate run, also those that name a node ("kubelet is ready on X").
            guard let node = e.node, isNodePhase(e.phase), e.phase != .gates else { continue }
            if byNode[node] == nil { rows.append(node) }
            byNode[node, default: []].append(e)
        }
        let gates = gateRuns(events)
        var bars: [Bar] = []
        var waits: [Bar] = []
        var confirms: [Mark] = []
        for node in rows {
            let list = byNode[node]!
            var nodeBars: [Bar] = []
            for (a, b) in zip(list, list.dropFirst()) {
                // A node's first step is announced before the start hold: the step begins when the hold lifts.
                if a.status == .started && b.status == .waiting && waitPhases.contains(b.phase) { continue }
                if isConfirm(b) {
                    // Gates and confirm: from the node's last step to the confirm, with the gate runs in between.
                    let runs = gates.filter { $0.end >= a.timestamp && $0.start <= b.timestamp }
                    append(&nodeBars, Bar(row: node, phase: .gates, start: a.timestamp, end: b.timestamp, failed: false,
                                          detail: runs.flatMap(\.detail) + [b.message]))
                    confirms.append(Mark(row: node, at: b.timestamp, message: b.message))
                    continue
                }
                let phase = a.status == .started || a.status == .waiting && waitPhases.contains(a.phase) ? a.phase : b.phase
                append(&nodeBars, Bar(row: node, phase: phase, start: a.timestamp, end: b.timestamp, failed: b.status == .failed, detail: [b.message]))
                if waitPhases.contains(phase) { waits.append(nodeBars.last!) }
            }
            // A log without the node's confirm (written before nk3 logged it, or a rollout that ended first):
            // after its last event the node waits for the next gate run to pass.
            if let last = list.last, last.status != .failed, !isConfirm(last), !(waitPhases.contains(last.phase) && list.count == 1) {
                if let run = gates.first(where: { $0.start >= last.timestamp }) {
                    append(&nodeBars, Bar(row: node, phase: .gates, start: last.timestamp, end: run.end, failed: run.failed, detail: run.detail))
                } else if last.phase != .rollout {
                    // A single event (a switch apply's rebuild) still gets a visible bar, to the end of the log.
                    append(&nodeBars, Bar(row: node, phase: last.phase, start: last.timestamp, end: max(t1, last.timestamp), failed: false, detail: [last.message]))
                }
            }
            bars += nodeBars
        }
        if !gates.isEmpty {
            rows.append(clusterRow)
            bars += gates
            waits += gates.compactMap(\.waited)
        }
        return RolloutTimeline(start: t0, end: t1, rows: rows, bars: bars, waits: waits, failures: failures, confirms: confirms)
    }

    /// The coordinator's confirm of a node's apply (`RolloutMessages.confirmed`).
    static func isConfirm(_ e: RolloutEvent) -> Bool { e.node != nil && e.phase == .confirm && e.status == .ok }

    /// Phases drawn on a node's row.
    static func isNodePhase(_ p: RolloutPhase) -> Bool {
        switch p {
        case .lease, .preflight, .probe, .plan, .rollout: return false
        case .send, .rebuild, .drain, .reboot, .reachable, .ready, .uncordon, .gates, .confirm, .window, .alerts: return true
        }
    }

    /// Adds `bar`, merging it into the previous one when that is the same phase (a wait's progress lines).
    private static func append(_ bars: inout [Bar], _ bar: Bar) {
        if var last = bars.last, last.phase == bar.phase, last.end == bar.start, !last.failed {
            last.end = bar.end
            last.failed = bar.failed
            last.detail += bar.detail
            bars[bars.count - 1] = last
        } else {
            bars.append(bar)
        }
    }

    /// Consecutive gate events form one gate run; a run with `waiting` lines waited from the first of
    /// them to its end.
    private static func gateRuns(_ events: [RolloutEvent]) -> [GateRun] {
        var runs: [GateRun] = []
        var current: [RolloutEvent] = []
        func close() {
            guard let first = current.first, let last = current.last else { return }
            let firstWait = current.first { $0.status == .waiting }
            runs.append(
                GateRun(
                    row: clusterRow, phase: .gates, start: first.timestamp, end: last.timestamp,
                    failed: current.contains { $0.status == .failed }, detail: current.map(\.message),
                    waitStart: firstWait?.timestamp))
            current = []
        }
        for e in events {
            if e.phase == .gates { current.append(e) } else { close() }
        }
        close()
        return runs
    }
}

/// A cluster-wide gate run (a `Bar` on the cluster row, with when it began to wait).
typealias GateRun = RolloutTimeline.Bar

extension RolloutTimeline.Bar {
    /// The part of a gate run spent waiting, if it waited.
    var waited: RolloutTimeline.Bar? {
        guard let w = waitStart, w < end else { return nil }
        return .init(row: row, phase: phase, start: w, end: end, failed: failed, detail: detail)
    }
}
