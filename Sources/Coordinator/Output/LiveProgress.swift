import Foundation

/// The live view of a rollout on a terminal, as a pure function of the events so far: nodes done of total,
/// each in-flight node's phase and time in it, what the rollout is waiting on (health gates, the maintenance
/// window, firing alerts), and an ETA from the node times measured so far and how many nodes may be in flight
/// (`RolloutETA`, `RolloutCapacity`). A node's time runs from its start (after any hold for the window or an
/// alert) to its confirm event, or to the gate run that let it go where no confirm follows (a reboot rollout).
/// `LiveProgressSink` redraws it in place; everything it shows is computed here.
public enum LiveProgress {
    /// What the view shows, before it is turned into lines.
    public struct Snapshot: Sendable, Hashable {
        public struct InFlight: Sendable, Hashable {
            public var node: String
            public var phase: String
            public var since: Date
            /// A node in `phase` since `since`.
            public init(node: String, phase: String, since: Date) {
                self.node = node
                self.phase = phase
                self.since = since
            }
        }
        public var total: Int
        public var done: Int
        public var inFlight: [InFlight]
        /// Lines saying what is being waited on (the last waiting line of each gate, window, alerts).
        public var waitingOn: [String]
        /// Seconds still to go, if anything was measured yet.
        public var eta: TimeInterval?
        public var started: Date?
        public var finished: Bool
    }

    /// The snapshot after `events`, for a rollout of `nodes` (in start order) that may have `capacity` in
    /// flight, at `now`.
    public static func snapshot(
        events: [RolloutEvent], nodes: [String], now: Date, capacity: RolloutCapacity = RolloutCapacity()
    ) -> Snapshot {
        var done: Set<String> = []
        var current: [String: (phase: String, since: Date)] = [:]
        var atGates: Set<String> = []
        var gateWaits: [String] = []
        var holds: [String: String] = [:]
        var inGateRun = false
        var finished = false
        var nodeStart: [String: Date] = [:]
        var held: Set<String> = []
        var ships: Set<String> = []
        var nodeTimes: [String: TimeInterval] = [:]
        func finish(_ node: String, at t: Date) {
            if done.insert(node).inserted, let s = nodeStart[node] { nodeTimes[node] = t.timeIntervalSince(s) }
            current[node] = nil
            holds[node] = nil
            atGates.remove(node)
        }
        for e in events {
            if e.phase == .gates {  // a gate run's lines, also those naming a node
                inGateRun = true
                if e.status == .waiting || e.status == .warning { gateWaits = [e.message] }
                continue
            }
            if inGateRun {  // the gate run before this event passed: nodes waiting on it are confirmed next
                inGateRun = false
                gateWaits = []
                for n in atGates {
                    if ships.contains(n) { current[n] = (RolloutPhase.confirm.rawValue, e.timestamp) } else { finish(n, at: e.timestamp) }
                }
                atGates = []
            }
            if e.phase == .rollout && e.node == nil && (e.status == .ok || e.status == .failed) {
                finished = true
                for n in atGates { finish(n, at: e.timestamp) }
                for (n, c) in current where c.phase == RolloutPhase.confirm.rawValue { finish(n, at: e.timestamp) }
            }
            guard let node = e.node else { continue }
            if e.phase == .rollout && (e.status == .skipped) { finish(node, at: e.timestamp); continue }
            if RolloutTimeline.isConfirm(e) { finish(node, at: e.timestamp); continue }
            guard RolloutTimeline.isNodePhase(e.phase) else { continue }
            if e.phase == .rebuild || e.phase == .send { ships.insert(node) }
            if e.phase == .window || e.phase == .alerts {
                // Held before its start: the node's time starts when the hold lifts.
                if e.status == .waiting { holds[node] = e.message }
                held.insert(node)
                if nodeStart[node] == nil { nodeStart[node] = e.timestamp }
                current[node] = (e.phase.rawValue, current[node]?.phase == e.phase.rawValue ? current[node]!.since : e.timestamp)
                continue
            }
            if nodeStart[node] == nil || held.remove(node) != nil { nodeStart[node] = e.timestamp }
            holds[node] = nil
            let label = e.status == .started ? e.phase.rawValue : next(after: e.phase)
            if current[node]?.phase != label { current[node] = (label, e.timestamp) }
            if label == RolloutPhase.gates.rawValue { atGates.insert(node) }
            if e.status == .failed { current[node] = ("failed: \(e.phase.rawValue)", e.timestamp) }
        }
        let inFlight = current.filter { !done.contains($0.key) }.map { Snapshot.InFlight(node: $0.key, phase: $0.value.phase, since: $0.value.since) }
            .sorted { ($0.since, $0.node) < ($1.since, $1.node) }
        let doneCount = done.count
        var eta: TimeInterval?
        if !finished {
            let running = inFlight.map { f in
                (node: f.node, elapsed: held.contains(f.node) ? 0 : now.timeIntervalSince(nodeStart[f.node] ?? now))
            }
            let pending = nodes.filter { !done.contains($0) && current[$0] == nil }
            eta = RolloutETA.remaining(inFlight: running, pending: pending, measured: nodeTimes, capacity: capacity)
        }
        return Snapshot(
            total: max(nodes.count, doneCount + inFlight.count), done: doneCount, inFlight: inFlight,
            waitingOn: gateWaits.map { "gates: \($0)" } + holds.keys.sorted().map { holds[$0]! }, eta: eta,
            started: events.first?.timestamp, finished: finished)
    }

    /// What a node does after an event that closed `phase`.
    static func next(after phase: RolloutPhase) -> String {
        switch phase {
        case .reachable: return RolloutPhase.ready.rawValue
        case .ready: return RolloutPhase.uncordon.rawValue
        case .uncordon: return RolloutPhase.gates.rawValue
        default: return phase.rawValue
        }
    }

    /// The view's lines (no colours, no escape codes).
    public static func render(_ s: Snapshot, now: Date) -> [String] {
        var head = "nk3: \(s.done)/\(s.total) nodes done"
        if let start = s.started { head += " · elapsed \(RolloutReport.duration(now.timeIntervalSince(start)))" }
        if s.finished {
            head += " · finished"
        } else if let eta = s.eta {
            head += " · ETA ~\(RolloutReport.duration(eta))"
        } else {
            head += " · ETA after the first node"
        }
        var lines = [head]
        for f in s.inFlight {
            lines.append("  \(f.node)  \(f.phase)  \(RolloutReport.duration(now.timeIntervalSince(f.since)))")
        }
        for w in s.waitingOn { lines.append("  waiting: \(w)") }
        return lines
    }
}
