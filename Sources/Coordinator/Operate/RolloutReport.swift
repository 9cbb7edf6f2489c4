import Foundation

/// `nk3 report`: one self-contained HTML page (inline CSS and SVG, no scripts, no external assets) from a
/// rollout's event log: a timeline with one row per node and one bar per phase, gate waits hatched, each confirm
/// a dark tick at the end of its node's gates-and-confirm bar and failures marked in red, and a summary table (per-phase durations, the slowest node, time lost waiting).
public enum RolloutReport {
    /// What the summary table says, computed from the timeline (tested on its own).
    public struct Summary: Sendable, Hashable {
        /// Per phase, in pipeline order: how many bars, their total, mean and longest, and whose was longest.
        public struct PhaseRow: Sendable, Hashable {
            public var phase: RolloutPhase
            public var count: Int
            public var total: TimeInterval
            public var longest: TimeInterval
            public var longestNode: String
            public var mean: TimeInterval { count == 0 ? 0 : total / Double(count) }
        }
        public var phases: [PhaseRow]
        /// The node whose phases spanned the longest time, and that time.
        public var slowestNode: NodeTime?
        /// Time spent waiting: gate runs waiting for the cluster, nodes held by the window or by alerts.
        public var waitingOnGates: TimeInterval
        public var waitingOnWindow: TimeInterval
        public var waitingOnAlerts: TimeInterval
        /// First to last event.
        public var total: TimeInterval
        /// The last `rollout`-phase message (complete, aborted), if any.
        public var outcome: String?
        /// A node and a time.
        public struct NodeTime: Sendable, Hashable {
            public var name: String
            public var seconds: TimeInterval
            /// `name` took `seconds`.
            public init(name: String, seconds: TimeInterval) {
                self.name = name
                self.seconds = seconds
            }
        }
    }

    /// The summary of `timeline` (with `events` for the outcome line).
    public static func summary(_ timeline: RolloutTimeline, events: [RolloutEvent]) -> Summary {
        var rows: [Summary.PhaseRow] = []
        for phase in RolloutPhase.allCases {
            let bars = timeline.nodeBars.filter { $0.phase == phase }
            guard let longest = bars.max(by: { $0.duration < $1.duration }) else { continue }
            rows.append(
                .init(phase: phase, count: bars.count, total: bars.reduce(0) { $0 + $1.duration },
                      longest: longest.duration, longestNode: longest.row))
        }
        var spans: [(String, TimeInterval)] = []
        for row in timeline.rows where row != RolloutTimeline.clusterRow {
            let bars = timeline.bars.filter { $0.row == row }
            guard let first = bars.map(\.start).min(), let last = bars.map(\.end).max() else { continue }
            spans.append((row, last.timeIntervalSince(first)))
        }
        let slowest = spans.max { $0.1 < $1.1 }
        func waited(_ phase: RolloutPhase) -> TimeInterval {
            timeline.waits.filter { $0.phase == phase }.reduce(0) { $0 + $1.duration }
        }
        return Summary(
            phases: rows, slowestNode: slowest.map { Summary.NodeTime(name: $0.0, seconds: $0.1) }, waitingOnGates: waited(.gates),
            waitingOnWindow: waited(.window), waitingOnAlerts: waited(.alerts),
            total: timeline.end.timeIntervalSince(timeline.start),
            outcome: events.last { $0.phase == .rollout && $0.node == nil }?.message
                ?? events.last { $0.status == .failed }?.message)
    }

    /// The page for `events`; `title` names the log.
    public static func html(events: [RolloutEvent], title: String) -> String {
        let timeline = RolloutTimeline.build(events)
        let summary = summary(timeline, events: events)
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>nk3 rollout \(esc(title))</title>
            <style>
            body{font:14px system-ui,sans-serif;margin:24px;color:#222}
            h1{font-size:20px}table{border-collapse:collapse;margin:12px 0}
            td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f4f4f4}
            td.num{text-align:right;font-variant-numeric:tabular-nums}
            svg text{font:12px system-ui,sans-serif}.legend span{display:inline-block;margin-right:14px}
            .swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
            </style></head><body>
            <h1>nk3 rollout \(esc(title))</h1>
            <p>\(esc(RolloutTimestamp.format(timeline.start))) → \(esc(RolloutTimestamp.format(timeline.end))) \
            (\(esc(duration(summary.total)))), \(timeline.rows.filter { $0 != RolloutTimeline.clusterRow }.count) node(s). \
            \(esc(summary.outcome ?? ""))</p>

            """
        page += legend(timeline)
        page += svg(timeline)
        page += table(summary)
        page += "</body></html>\n"
        return page
    }

    static func legend(_ t: RolloutTimeline) -> String {
        let phases = RolloutPhase.allCases.filter { p in t.bars.contains { $0.phase == p } }
        var s = "<p class=\"legend\">"
        for p in phases {
            s += "<span><i class=\"swatch\" style=\"background:\(colour(p))\"></i>\(p.rawValue)</span>"
        }
        s += "<span><i class=\"swatch\" style=\"background:repeating-linear-gradient(45deg,#555 0 3px,#fff 3px 6px)\"></i>waiting (hatched)</span>"
        if !t.confirms.isEmpty { s += "<span><i class=\"swatch\" style=\"background:#222;width:3px\"></i>confirmed</span>" }
        s += "<span><i class=\"swatch\" style=\"background:#d00\"></i>failure</span></p>\n"
        return s
    }

    static func svg(_ t: RolloutTimeline) -> String {
        let labelWidth = 230.0, plotWidth = 820.0, rowHeight = 24.0, top = 28.0
        let span = max(t.end.timeIntervalSince(t.start), 0.001)
        func x(_ d: Date) -> Double { labelWidth + plotWidth * d.timeIntervalSince(t.start) / span }
        let height = top + rowHeight * Double(t.rows.count) + 10
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(labelWidth + plotWidth + 20))" height="\(Int(height))" \
            role="img" aria-label="rollout timeline">
            <defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">\
            <rect width="3" height="6" fill="#555" fill-opacity="0.55"/></pattern></defs>

            """
        for i in 0...5 {  // time axis
            let frac = Double(i) / 5
            let px = labelWidth + plotWidth * frac
            s += "<line x1=\"\(f(px))\" y1=\"\(f(top - 6))\" x2=\"\(f(px))\" y2=\"\(f(height - 10))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(f(px))\" y=\"\(f(top - 10))\" text-anchor=\"middle\">+\(esc(duration(span * frac)))</text>\n"
        }
        for (i, row) in t.rows.enumerated() {
            let y = top + rowHeight * Double(i)
            s += "<text x=\"4\" y=\"\(f(y + 16))\">\(esc(row))</text>\n"
            for bar in t.bars where bar.row == row {
                let x0 = x(bar.start)
                let w = max(x(bar.end) - x0, 2)
                s += "<rect class=\"bar\" data-node=\"\(esc(row))\" data-phase=\"\(bar.phase.rawValue)\" "
                    + "x=\"\(f(x0))\" y=\"\(f(y + 3))\" width=\"\(f(w))\" height=\"\(f(rowHeight - 6))\" "
                    + "fill=\"\(colour(bar.phase))\"\(bar.failed ? " stroke=\"#d00\" stroke-width=\"2\"" : "")>"
                    + "<title>\(esc(row)) \(bar.phase.rawValue): \(esc(duration(bar.duration)))"
                    + (bar.detail.isEmpty ? "" : " — " + esc(bar.detail.suffix(3).joined(separator: " / "))) + "</title></rect>\n"
            }
            for wait in t.waits where wait.row == row {
                let x0 = x(wait.start)
                s += "<rect class=\"wait\" data-phase=\"\(wait.phase.rawValue)\" x=\"\(f(x0))\" y=\"\(f(y + 3))\" "
                    + "width=\"\(f(max(x(wait.end) - x0, 2)))\" height=\"\(f(rowHeight - 6))\" fill=\"url(#hatch)\">"
                    + "<title>waiting \(esc(duration(wait.duration)))</title></rect>\n"
            }
            for confirm in t.confirms where confirm.row == row {  // the end of the node's gates-and-confirm bar
                let px = x(confirm.at)
                s += "<g class=\"confirm\" data-node=\"\(esc(row))\"><line x1=\"\(f(px))\" y1=\"\(f(y + 1))\" x2=\"\(f(px))\" "
                    + "y2=\"\(f(y + rowHeight - 1))\" stroke=\"#222\" stroke-width=\"3\"/><title>\(esc(confirm.message))</title></g>\n"
            }
            for failure in t.failures where failure.row == row {
                let px = x(failure.at)
                s += "<g class=\"failure\"><line x1=\"\(f(px))\" y1=\"\(f(y))\" x2=\"\(f(px))\" y2=\"\(f(y + rowHeight))\" "
                    + "stroke=\"#d00\" stroke-width=\"3\"/><text x=\"\(f(px + 4))\" y=\"\(f(y + 16))\" fill=\"#d00\">✖"
                    + "<title>\(esc(failure.message))</title></text></g>\n"
            }
        }
        s += "</svg>\n"
        return s
    }

    static func table(_ s: Summary) -> String {
        var h = "<h2>Summary</h2>\n<table class=\"summary\"><tr><th>phase</th><th>bars</th><th>total</th><th>mean</th><th>longest</th><th>longest on</th></tr>\n"
        for r in s.phases {
            h += "<tr><td>\(r.phase.rawValue)</td><td class=\"num\">\(r.count)</td><td class=\"num\">\(esc(duration(r.total)))</td>"
                + "<td class=\"num\">\(esc(duration(r.mean)))</td><td class=\"num\">\(esc(duration(r.longest)))</td><td>\(esc(r.longestNode))</td></tr>\n"
        }
        h += "</table>\n<table class=\"totals\">"
        if let slow = s.slowestNode {
            h += "<tr><th>slowest node</th><td>\(esc(slow.name)) (\(esc(duration(slow.seconds))))</td></tr>"
        }
        h += "<tr><th>time lost waiting on health gates</th><td class=\"num\">\(esc(duration(s.waitingOnGates)))</td></tr>"
        h += "<tr><th>time held by the maintenance window</th><td class=\"num\">\(esc(duration(s.waitingOnWindow)))</td></tr>"
        h += "<tr><th>time held by firing alerts</th><td class=\"num\">\(esc(duration(s.waitingOnAlerts)))</td></tr>"
        h += "<tr><th>whole rollout</th><td class=\"num\">\(esc(duration(s.total)))</td></tr></table>\n"
        return h
    }

    /// A fixed colour per phase.
    static func colour(_ p: RolloutPhase) -> String {
        switch p {
        case .send: return "#8da0cb"
        case .rebuild: return "#4e79a7"
        case .drain: return "#f28e2b"
        case .reboot: return "#e15759"
        case .reachable: return "#76b7b2"
        case .ready: return "#59a14f"
        case .uncordon: return "#edc948"
        case .gates: return "#b07aa1"
        case .confirm: return "#9c755f"
        case .window: return "#bab0ac"
        case .alerts: return "#ff9da7"
        case .lease, .preflight, .probe, .plan, .rollout: return "#999999"
        }
    }

    /// `4.2 s`, `3m 07s`, `2h 05m`.
    public static func duration(_ seconds: TimeInterval) -> String {
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let s = Int(seconds.rounded())
        if s < 3600 { return String(format: "%dm %02ds", s / 60, s % 60) }
        return String(format: "%dh %02dm", s / 3600, (s % 3600) / 60)
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// Escapes text for HTML and XML attributes.
    static func esc(_ s: String) -> String {
        var o = ""
        o.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&#39;"
            default: o.append(c)
            }
        }
        return o
    }
}
