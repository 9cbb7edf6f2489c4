import Foundation
import NK3Coordinator
import Testing

/// Human lines with colours only where wanted; JSON lines that parse, one object per line.
@Suite struct OutputTests {
    final class Buffer: @unchecked Sendable {
        // @unchecked: guarded by `lock`.
        private let lock = NSLock()
        private var text = ""
        func append(_ s: String) { lock.withLock { text += s } }
        var value: String { lock.withLock { text } }
    }

    let events: [RolloutEvent] = [
        RolloutEvent(timestamp: RT.t0, node: "n1", phase: .probe, status: .ok, message: "n1 is reachable"),
        RolloutEvent(timestamp: RT.t0, node: "n1", phase: .plan, status: .diff, message: "--- \n+++ \n@@ -1 +1 @@\n-a\n+b"),
        RolloutEvent(timestamp: RT.t0.addingTimeInterval(1.5), node: "n1", phase: .drain, status: .started, message: "Draining n1"),
        RolloutEvent(timestamp: RT.t0, node: nil, phase: .gates, status: .waiting, message: "1 daemonsets recovering in namespace default"),
        RolloutEvent(timestamp: RT.t0, node: "n1", phase: .ready, status: .failed, message: "rollout aborted: \"n1\" failed\nline 2 \u{1B}"),
    ]

    @Test func jsonEventsParseOnePerLine() throws {
        let out = Buffer()
        let sink = JSONLinesEventSink(out: out.append)
        for e in events { sink.emit(e) }
        let lines = out.value.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == events.count + 1 && lines.last == "")
        for (line, event) in zip(lines, events) {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(obj["message"] as? String == event.message)
            #expect(obj["phase"] as? String == event.phase.rawValue)
            #expect(obj["status"] as? String == event.status.rawValue)
            #expect(obj["node"] as? String == event.node)
            #expect((obj["timestamp"] as? String)?.hasSuffix("Z") == true)
        }
        #expect(lines[2].contains(#""timestamp":"2024-05-01T12:00:01.500Z""#))
    }

    @Test func humanSinkPrintsTheSeedsLinesPlainWithoutColour() {
        let out = Buffer(), err = Buffer()
        let sink = HumanEventSink(useColor: false, out: out.append, err: err.append)
        for e in events { sink.emit(e) }
        #expect(out.value == "n1 is reachable\n--- \n+++ \n@@ -1 +1 @@\n-a\n+b\nDraining n1\n1 daemonsets recovering in namespace default\n")
        #expect(err.value == "rollout aborted: \"n1\" failed\nline 2 \u{1B}\n")
        #expect(!out.value.contains("\u{1B}["))
    }

    @Test func humanSinkColoursErrorsRedAndDiffLines() {
        let sink = HumanEventSink(useColor: true, out: { _ in }, err: { _ in })
        #expect(sink.render(events[4]).hasPrefix("\u{1B}[31m"))
        #expect(sink.render(events[0]) == "\u{1B}[32mn1 is reachable\u{1B}[0m\n")
        #expect(sink.render(events[2]) == "Draining n1\n")
        let diff = sink.render(events[1])
        #expect(diff.contains("\u{1B}[31m-a\u{1B}[0m") && diff.contains("\u{1B}[32m+b\u{1B}[0m"))
    }

    @Test func colourOnlyOnATerminalWithoutNoColor() {
        #expect(HumanEventSink.shouldUseColor(isTerminal: true, environment: [:]))
        #expect(!HumanEventSink.shouldUseColor(isTerminal: false, environment: [:]))
        #expect(!HumanEventSink.shouldUseColor(isTerminal: true, environment: ["NO_COLOR": "1"]))
        #expect(HumanEventSink.shouldUseColor(isTerminal: true, environment: ["NO_COLOR": ""]))  // no-color.org: non-empty
        #expect(!HumanEventSink.shouldUseColor(isTerminal: true, environment: ["TERM": "dumb"]))
    }

    @Test func timestampsAreRFC3339UTCWithMilliseconds() {
        #expect(RolloutTimestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(RolloutTimestamp.format(Date(timeIntervalSince1970: 1_714_564_800.25)) == "2024-05-01T12:00:00.250Z")
        #expect(RolloutTimestamp.format(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
    }

    @Test func durationsReadNaturally() {
        #expect(RolloutDurations.describe(.seconds(600)) == "10m")
        #expect(RolloutDurations.describe(.seconds(90)) == "1m30s")
        #expect(RolloutDurations.describe(.milliseconds(250)) == "250ms")
        #expect(RolloutDurations.describe(.milliseconds(1500)) == "1.5s")
        #expect(RolloutDurations.describe(.seconds(3600)) == "1h")
    }
}
