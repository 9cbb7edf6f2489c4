import Foundation
import NK3Coordinator
import Testing

/// The live view is a pure function of the events (`LiveProgress`); the terminal writer only redraws it.
@Suite("Live progress (pure view and in-place writer)")
struct LiveProgressTests {
    static let events = ReportFixture.events
    static func at(_ s: Double) -> Date { ReportFixture.t0.addingTimeInterval(s) }
    static func upTo(_ s: Double) -> [RolloutEvent] { events.filter { $0.timestamp <= at(s) } }

    @Test func whileTheGatesWaitTheNodeIsInFlightAtGatesAndTheWaitIsNamed() {
        let snap = LiveProgress.snapshot(events: Self.upTo(130), nodes: ["n1", "n2"], now: Self.at(130))
        #expect(snap.done == 0 && snap.total == 2)
        #expect(snap.inFlight == [.init(node: "n1", phase: "gates", since: Self.at(122))])
        #expect(snap.waitingOn == ["gates: 1 daemonsets recovering in namespace default"])
        #expect(snap.eta == nil, "nothing measured yet")
        #expect(LiveProgress.render(snap, now: Self.at(130)) == [
            "nk3: 0/2 nodes done · elapsed 2m 10s · ETA after the first node",
            "  n1  gates  8.0 s",
            "  waiting: gates: 1 daemonsets recovering in namespace default",
        ])
    }

    @Test func aHeldNodeAndAnETAFromTheNodesMeasured() {
        let snap = LiveProgress.snapshot(events: Self.upTo(160), nodes: ["n1", "n2"], now: Self.at(160))
        #expect(snap.done == 1)
        #expect(snap.inFlight.map(\.node) == ["n2"] && snap.inFlight.first?.phase == "window")
        #expect(snap.waitingOn == ["n2 waits for the maintenance window"])
        // n1 took 153 s (first event to the gate run that confirmed it); n2 started 6 s ago.
        #expect(snap.eta == 147)
        let later = LiveProgress.snapshot(events: Self.upTo(776), nodes: ["n1", "n2"], now: Self.at(776))
        #expect(later.inFlight == [.init(node: "n2", phase: "drain", since: Self.at(774))])
        #expect(later.waitingOn.isEmpty)
        #expect(later.eta == 0, "n2 has been going longer than n1 took")
    }

    @Test func theEndShowsEveryNodeDone() {
        let snap = LiveProgress.snapshot(events: Self.events, nodes: ["n1", "n2"], now: Self.at(900))
        #expect(snap.done == 2 && snap.finished && snap.inFlight.isEmpty)
        #expect(LiveProgress.render(snap, now: Self.at(838)).first == "nk3: 2/2 nodes done · elapsed 13m 58s · finished")
    }

    @Test func theWriterRedrawsTheBlockInPlaceBelowEachLine() {
        let written = CollectingText()
        let sink = LiveProgressSink(
            nodes: ["n1", "n2"], width: 80, line: { $0.message + "\n" }, write: { written.append($0) },
            now: { Self.at(130) })
        for e in Self.upTo(123) { sink.emit(e) }
        let chunks = written.chunks
        #expect(chunks.count == Self.upTo(123).count)
        #expect(!chunks[0].contains("\u{1B}[1A"), "nothing to erase before the first block")
        // Every later write first moves up over the block drawn before (its line count) and clears it.
        let last = chunks.last!
        #expect(last.hasPrefix("\r\u{1B}[2A\u{1B}[J1 daemonsets recovering in namespace default\n"), "\(last.debugDescription)")
        #expect(last.hasSuffix("\u{1B}[7m  waiting: gates: 1 daemonsets recovering in namespace default\u{1B}[0m\n"))
        sink.refresh()
        #expect(written.chunks.last!.hasPrefix("\r\u{1B}[3A\u{1B}[J\u{1B}[7mnk3: 0/2"))
        sink.stop()
        sink.emit(Self.events[11])
        #expect(written.chunks.last == Self.events[11].message + "\n", "after stop: plain lines")
    }
}

final class CollectingText: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var list: [String] = []
    func append(_ s: String) { lock.withLock { list.append(s) } }
    var chunks: [String] { lock.withLock { list } }
}
