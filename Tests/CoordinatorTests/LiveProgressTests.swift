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

    @Test func afterTheGatesPassTheNodeIsAtItsConfirmUntilTheConfirmEvent() {
        let snap = LiveProgress.snapshot(events: Self.upTo(153) + [ReportFixture.e(154, nil, .rollout, .info, "a line")],
                                         nodes: ["n1", "n2"], now: Self.at(155))
        #expect(snap.done == 0 && snap.inFlight == [.init(node: "n1", phase: "confirm", since: Self.at(154))])
        #expect(snap.waitingOn.isEmpty)
        #expect(LiveProgress.snapshot(events: Self.upTo(158), nodes: ["n1", "n2"], now: Self.at(158)).done == 1)
    }

    @Test func aHeldNodeAndAnETAFromTheNodesMeasured() {
        let snap = LiveProgress.snapshot(events: Self.upTo(160), nodes: ["n1", "n2"], now: Self.at(160))
        #expect(snap.done == 1)
        #expect(snap.inFlight.map(\.node) == ["n2"] && snap.inFlight.first?.phase == "window")
        #expect(snap.waitingOn == ["n2 waits for the maintenance window"])
        // n1 took 157 s (its first event to its confirm); n2 is held before its start, so all of it is to come.
        #expect(snap.eta == 157)
        let later = LiveProgress.snapshot(events: Self.upTo(781), nodes: ["n1", "n2"], now: Self.at(781))
        #expect(later.inFlight == [.init(node: "n2", phase: "drain", since: Self.at(779))])
        #expect(later.waitingOn.isEmpty)
        // n2's time runs from the hold's lift (759), not from the line announced before the hold (159).
        #expect(later.eta == 135)
    }

    @Test func theETACountsTheNodesThatMayBeInFlightTogether() {
        // n1 measured 157 s; n2 held; n3…n5 to start.
        let nodes = ["n1", "n2", "n3", "n4", "n5"]
        let one = LiveProgress.snapshot(events: Self.upTo(160), nodes: nodes, now: Self.at(160))
        #expect(one.eta == 628, "4 × 157 s")
        // Budget 2: n2 with n3, then n4 with n5.
        let two = LiveProgress.snapshot(events: Self.upTo(160), nodes: nodes, now: Self.at(160), capacity: .init(budget: 2))
        #expect(two.eta == 314, "2 × 157 s")
        // Budget 4, but n4 and n5 are k3s servers, one at a time: n2 n3 n4 together, then n5.
        let servers = RolloutCapacity(budget: 4, servers: ["n4", "n5"], serverLimit: 1)
        #expect(LiveProgress.snapshot(events: Self.upTo(160), nodes: nodes, now: Self.at(160), capacity: servers).eta == 314)
        #expect(LiveProgress.render(two, now: Self.at(160)).first == "nk3: 1/5 nodes done · elapsed 2m 40s · ETA ~5m 14s")
    }

    @Test func theEndShowsEveryNodeDone() {
        let snap = LiveProgress.snapshot(events: Self.events, nodes: ["n1", "n2"], now: Self.at(900))
        #expect(snap.done == 2 && snap.finished && snap.inFlight.isEmpty)
        #expect(LiveProgress.render(snap, now: Self.at(844)).first == "nk3: 2/2 nodes done · elapsed 14m 04s · finished")
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

/// The ETA's estimator on its own, with exact numbers.
@Suite("ETA estimator (pure)")
struct RolloutETATests {
    @Test func nothingMeasuredMeansNoEstimate() {
        #expect(RolloutETA.remaining(inFlight: [("a1", 10)], pending: ["a2"], measured: [:], capacity: .init()) == nil)
    }

    @Test func oneAtATimeIsWhatIsLeftOfTheNodeInFlightPlusTheRest() {
        let eta = RolloutETA.remaining(inFlight: [("a2", 60)], pending: ["a3", "a4", "a5"], measured: ["a1": 100], capacity: .init())
        #expect(eta == 340, "40 s left of a2, then 3 × 100 s")
    }

    @Test func theBudgetDividesTheNodesToCome() {
        let pending = (1...6).map { "a\($0)" }
        #expect(RolloutETA.remaining(inFlight: [], pending: pending, measured: ["a0": 100], capacity: .init(budget: 3)) == 200)
        #expect(RolloutETA.remaining(inFlight: [], pending: pending, measured: ["a0": 100], capacity: .init(budget: 4)) == 200)
        #expect(RolloutETA.remaining(inFlight: [], pending: pending, measured: ["a0": 100], capacity: .init(budget: 6)) == 100)
    }

    @Test func serversGoOneAtATimeWhateverTheBudget() {
        // The default order: other nodes first, then the servers. Budget 3, one server down at a time:
        // a1 a2 a3 | a4 s1 | s2 | s3 — four rounds of 100 s, where the budget alone would say three.
        let capacity = RolloutCapacity(budget: 3, servers: ["s1", "s2", "s3"], serverLimit: 1)
        let eta = RolloutETA.remaining(
            inFlight: [], pending: ["a1", "a2", "a3", "a4", "s1", "s2", "s3"], measured: ["a0": 100], capacity: capacity)
        #expect(eta == 400)
        // Five servers may lose two at a time: a1 a2 a3 | a4 s1 s2 | s3 — three rounds.
        let five = RolloutCapacity(budget: 3, servers: ["s1", "s2", "s3", "s4", "s5"], serverLimit: 2)
        #expect(RolloutETA.remaining(inFlight: [], pending: ["a1", "a2", "a3", "a4", "s1", "s2", "s3"], measured: ["a0": 100], capacity: five) == 300)
    }

    @Test func eachRoleTakesItsOwnMeasuredTimeAndANodeStartsWhenASlotFrees() {
        // Servers measured at 200 s, other nodes at 100 s. Budget 2: s1 has 30 s left, a1 70 s.
        // At 30 s s1 is done and a2 starts (ends 130); s2 waits for a slot: a1 ends at 70, s2 ends at 270.
        let capacity = RolloutCapacity(budget: 2, servers: ["s0", "s1", "s2"], serverLimit: 1)
        let eta = RolloutETA.remaining(
            inFlight: [("s1", 170), ("a1", 30)], pending: ["a2", "s2"], measured: ["s0": 200, "a0": 100], capacity: capacity)
        #expect(eta == 270)
        // A node past its mean has nothing left; with nothing measured for its role, the mean of all counts.
        #expect(RolloutETA.remaining(inFlight: [("s1", 500)], pending: ["s2"], measured: ["a0": 100], capacity: capacity) == 100)
    }

    @Test func thePlansCapacityIsItsBudgetAndQuorum() {
        let plan = RT.applyPlan(servers: ["s1", "s2", "s3"], agents: ["a1"], options: .init(disruptionBudget: 3))
        #expect(RolloutCapacity(plan: plan) == RolloutCapacity(budget: 3, servers: ["s1", "s2", "s3"], serverLimit: 1))
        #expect(RolloutCapacity(plan: RT.applyPlan(servers: ["s1"])).serverLimit == 1, "--allow-quorum-loss rolls one at a time")
    }
}
