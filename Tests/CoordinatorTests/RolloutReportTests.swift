import Foundation
import NK3Common
import Synchronization
@testable import NK3Coordinator
import Testing

/// A rollout's events as the executor writes them: two nodes through a boot apply, a gate run that waits for a
/// DaemonSet, n1's agent slow to answer its confirm (5 s), the second node held by the maintenance window first.
enum ReportFixture {
    static let t0 = Date(timeIntervalSince1970: 1_714_564_800)

    static func e(_ s: Double, _ node: String?, _ phase: RolloutPhase, _ status: RolloutEventStatus, _ m: String) -> RolloutEvent {
        RolloutEvent(timestamp: t0.addingTimeInterval(s), node: node, phase: phase, status: status, message: m)
    }

    static var events: [RolloutEvent] {
        [
            e(0, nil, .rollout, .info, "Rollout log: /tmp/x.jsonl"),
            e(0.5, nil, .lease, .info, "Holding the rollout lease"),
            e(1, "n1", .rebuild, .started, "Rebuilding NixOS on n1"),
            e(31, "n1", .drain, .started, "Draining n1"),
            e(41, "n1", .reboot, .started, "Rebooting n1"),
            e(101, "n1", .reachable, .ok, "n1 is reachable"),
            e(111, "n1", .ready, .waiting, "kubelet not ready on n1"),
            e(121, "n1", .ready, .ok, "kubelet is ready on n1"),
            e(122, "n1", .uncordon, .ok, "n1 uncordoned"),
            e(123, nil, .gates, .waiting, "1 daemonsets recovering in namespace default"),
            e(124, "n2", .gates, .ok, "kubelet is ready on n2"),
            e(153, nil, .gates, .ok, "ceph state is HEALTH_OK"),
            e(158, "n1", .confirm, .ok, "Confirmed apply 1 on n1: its agent keeps the new generation"),
            e(159, "n2", .rebuild, .started, "Rebuilding NixOS on n2"),
            e(159, "n2", .window, .waiting, "n2 waits for the maintenance window"),
            e(759, "n2", .rebuild, .started, "Hold lifted: n2 starts now"),
            e(779, "n2", .drain, .started, "Draining n2"),
            e(785, "n2", .reboot, .started, "Rebooting n2"),
            e(835, "n2", .reachable, .ok, "n2 is reachable"),
            e(840, "n2", .ready, .ok, "kubelet is ready on n2"),
            e(841, "n2", .uncordon, .ok, "n2 uncordoned"),
            e(842, nil, .gates, .ok, "ceph state is HEALTH_OK"),
            e(843, "n2", .confirm, .ok, "Confirmed apply 1 on n2: its agent keeps the new generation"),
            e(844, nil, .rollout, .ok, "Rollout complete: 2 node(s) updated"),
        ]
    }

    /// The same rollout as a log written before nk3 logged its confirms has it.
    static var legacy: [RolloutEvent] { events.filter { $0.phase != .confirm } }
}

/// Where Debian's chromium is, if installed (`.ci/run` installs it).
let chromiumPath: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

@Suite("Rollout log, timeline and report")
struct RolloutReportTests {
    @Test func timelineHasOneBarPerPhaseWithTheRightEdges() throws {
        let t = RolloutTimeline.build(ReportFixture.events)
        #expect(t.rows == ["n1", "n2", RolloutTimeline.clusterRow])
        let n1 = t.bars.filter { $0.row == "n1" }
        #expect(n1.map(\.phase) == [.rebuild, .drain, .reboot, .ready, .uncordon, .gates])
        // The gates-and-confirm bar ends at the confirm (158), not when the gate run passed (153).
        #expect(n1.map(\.duration) == [30, 10, 60, 20, 1, 36])
        #expect(n1.last?.detail == ["1 daemonsets recovering in namespace default", "kubelet is ready on n2", "ceph state is HEALTH_OK",
                                    "Confirmed apply 1 on n1: its agent keeps the new generation"])
        let n2 = t.bars.filter { $0.row == "n2" }
        // The hold comes before n2's rebuild: the step announced before the hold begins when the hold lifts.
        #expect(n2.map(\.phase) == [.window, .rebuild, .drain, .reboot, .ready, .uncordon, .gates])
        #expect(n2.map(\.duration) == [600, 20, 6, 50, 5, 1, 2])
        #expect(t.confirms.map(\.row) == ["n1", "n2"])
        #expect(t.confirms.map { $0.at.timeIntervalSince(ReportFixture.t0) } == [158, 843])
        // Waiting: the first gate run from its first waiting line to its end, and n2's hold.
        #expect(t.waits.map { Int($0.duration.rounded()) }.sorted() == [30, 600])
        #expect(t.failures.isEmpty)
    }

    @Test func aLogWithoutConfirmEventsStillRendersWithTheGateRunsEnd() {
        let t = RolloutTimeline.build(ReportFixture.legacy)
        #expect(t.confirms.isEmpty)
        let n1 = t.bars.filter { $0.row == "n1" }
        #expect(n1.map(\.phase) == [.rebuild, .drain, .reboot, .ready, .uncordon, .gates])
        #expect(n1.map { Int($0.duration.rounded()) } == [30, 10, 60, 20, 1, 31])
        #expect(t.bars.filter { $0.row == "n2" }.map { Int($0.duration.rounded()) } == [600, 20, 6, 50, 5, 1, 1])
        let page = RolloutReport.html(events: ReportFixture.legacy, title: "old log")
        #expect(page.components(separatedBy: "<rect class=\"bar\"").count - 1 == t.bars.count)
        #expect(!page.contains("class=\"confirm\"") && !page.contains("confirmed</span>"))
        // The current log marks each confirm once, with its message as the tooltip.
        let current = RolloutReport.html(events: ReportFixture.events, title: "new log")
        #expect(current.components(separatedBy: "<g class=\"confirm\" data-node=").count - 1 == 2)
        #expect(current.contains("<title>Confirmed apply 1 on n2: its agent keeps the new generation</title>"))
    }

    @Test func summaryNamesTheSlowestNodeAndTheTimeLostWaiting() {
        let events = ReportFixture.events
        let s = RolloutReport.summary(RolloutTimeline.build(events), events: events)
        #expect(s.slowestNode == .init(name: "n2", seconds: 684))
        #expect(s.waitingOnGates == 30)
        #expect(s.waitingOnWindow == 600)
        #expect(s.waitingOnAlerts == 0)
        #expect(s.total == 844)
        let reboot = s.phases.first { $0.phase == .reboot }
        #expect(reboot?.count == 2 && reboot?.total == 110 && reboot?.longestNode == "n1")
        #expect(s.outcome == "Rollout complete: 2 node(s) updated")
    }

    @Test func aFailureIsMarkedAndEndsTheNodesBars() {
        var events = Array(ReportFixture.events.prefix(8))
        events.append(ReportFixture.e(400, "n1", .ready, .failed, "rollout aborted: n1 failed during wait-ready"))
        let t = RolloutTimeline.build(events)
        #expect(t.failures.map(\.row) == ["n1"])
        let last = t.bars.filter { $0.row == "n1" }.last
        #expect(last?.phase == .ready && last?.failed == true)
        let page = RolloutReport.html(events: events, title: "failed")
        #expect(page.contains("class=\"failure\""))
    }

    /// A log that cannot be written (Linux's /dev/full answers every write with ENOSPC, as a full disk does)
    /// counts each lost line and reports the first one once; the events still reach the rest of the output.
    @Test func aFullDiskIsReportedOnceAndNeverStopsTheEvents() throws {
        let handle = try #require(FileHandle(forWritingAtPath: "/dev/full"))
        let heard = Mutex<[String]>([])
        let sink = RolloutLogSink(path: "/dev/full", handle: handle) { error in heard.withLock { $0.append("\(error)") } }
        let recorder = CollectingEventSink()
        let both = FanOutEventSink([sink, recorder])
        for e in ReportFixture.events { both.emit(e) }
        #expect(sink.writeFailures == ReportFixture.events.count)
        #expect(heard.withLock { $0.count } == 1, "the first lost line is reported, once")
        #expect(recorder.events == ReportFixture.events)
    }

    @Test func logRoundTripsThroughTheFileSink() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sink = try RolloutLogSink(directory: dir + "/.nk3/rollouts", startedAt: ReportFixture.t0)
        for e in ReportFixture.events { sink.emit(e) }
        #expect(sink.path.hasSuffix("/.nk3/rollouts/20240501T120000.000Z.jsonl"))
        #expect(RolloutLog.newest(in: dir + "/.nk3/rollouts") == sink.path)
        let back = try RolloutLog.read(path: sink.path)
        #expect(back == ReportFixture.events)
        // Each line is exactly what --output json prints.
        let text = try String(contentsOfFile: sink.path, encoding: .utf8)
        #expect(text == ReportFixture.events.map(JSONLinesEventSink.line(for:)).joined())
    }

    @Test func aTornLastLineIsSkippedAndAnyOtherBadLineIsNamed() throws {
        let good = ReportFixture.events.prefix(3).map(JSONLinesEventSink.line(for:)).joined()
        #expect(try RolloutLog.parse(good + #"{"message":"Drain"#).count == 3)
        #expect(throws: CoordinatorError.self) { try RolloutLog.parse("{}\n" + good) }
    }

    @Test func pageIsSelfContainedAndEscapesMessages() {
        var events = ReportFixture.events
        events.append(ReportFixture.e(839, "n1", .rollout, .warning, "<script>alert(1)</script> & \"x\""))
        let page = RolloutReport.html(events: events, title: "t")
        #expect(!page.contains("<script"))
        #expect(!page.contains("src=") && !page.contains("href=") && !page.contains("@import"))
        let bars = page.components(separatedBy: "<rect class=\"bar\"").count - 1
        #expect(bars == RolloutTimeline.build(events).bars.count)
    }

    /// The page in a real browser: Debian's chromium, headless, parses it; the DOM it built has the SVG and one
    /// bar per phase of every node, and the browser logged no error.
    @Test(.timeLimit(.minutes(2)), .enabled(if: chromiumPath != nil, "chromium is not installed (apt-get install chromium; .ci/run does)"))
    func chromiumLoadsThePageWithABarPerPhase() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let page = dir.appendingPathComponent("report.html")
        let events = ReportFixture.events
        try Data(RolloutReport.html(events: events, title: "fixture").utf8).write(to: page)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: chromiumPath!)
        p.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(dir.path)/profile", "--enable-logging=stderr", "--v=0", "--dump-dom", page.absoluteString,
        ]
        let out = Pipe()
        let errPath = dir.appendingPathComponent("chromium.log").path
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: errPath)
        // Read and wait on a thread of its own: chromium can take half a minute on a busy machine, and a blocked
        // thread of Swift's cooperative pool (two on a two-core machine) stalls every other test's tasks meanwhile.
        let dom: String = try await withCheckedThrowingContinuation { cont in
            Thread.detachNewThread {
                cont.resume(with: Result {
                    try p.run()
                    // A headless browser that never ends must not stall the whole run: killed after 100 s.
                    let pid = p.processIdentifier
                    let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
                    DispatchQueue.global().asyncAfter(deadline: .now() + 100, execute: watchdog)
                    defer { watchdog.cancel() }
                    let text = String(decoding: ((try? SecureFiles.readAll(out.fileHandleForReading.fileDescriptor, path: "pipe")) ?? Data()), as: UTF8.self)
                    p.waitUntilExit()
                    return text
                })
            }
        }
        let log = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        #expect(p.terminationStatus == 0, "chromium: \(log.suffix(2000))")
        #expect(dom.contains("<svg"), "no svg in the DOM chromium built")
        #expect(!log.contains("CONSOLE"), "the page logged to the console: \(log)")
        let timeline = RolloutTimeline.build(events)
        for row in timeline.rows {
            for phase in Set(timeline.bars.filter { $0.row == row }.map(\.phase)) {
                let expected = timeline.bars.filter { $0.row == row && $0.phase == phase }.count
                let found = dom.components(separatedBy: "data-node=\"\(row)\" data-phase=\"\(phase.rawValue)\"").count - 1
                #expect(found == expected, "\(row) \(phase.rawValue): \(found) bar(s) in the browser's DOM")
            }
        }
        #expect(dom.components(separatedBy: "<rect class=\"bar\"").count - 1 == timeline.bars.count)
        #expect(dom.components(separatedBy: "<g class=\"confirm\"").count - 1 == timeline.confirms.count && !timeline.confirms.isEmpty)
    }
}

