import Foundation
import Synchronization

/// The thin terminal writer of `LiveProgress`: every event's line scrolls above a status block that is redrawn
/// in place (cursor up, clear to the end of the screen: ECMA-48 CUU and ED, which every terminal emulator
/// implements), and `refresh()` redraws the block alone so times in phase keep counting between events.
/// Used only when standard output is a terminal; elsewhere the plain lines (`HumanEventSink`) are printed.
public final class LiveProgressSink: RolloutEventSink {
    private struct State {
        var events: [RolloutEvent] = []
        var drawn = 0
        var stopped = false
    }

    private let state = Mutex(State())
    private let nodes: [String]
    private let capacity: RolloutCapacity
    private let line: @Sendable (RolloutEvent) -> String
    private let write: @Sendable (String) -> Void
    private let now: @Sendable () -> Date
    private let width: Int

    /// A live view of a rollout of `nodes` (in start order) with `capacity` in flight at most; `line` renders an
    /// event's line(s) (newline included), `write` writes to the terminal, `width` is the terminal's width in
    /// columns (block lines are cut to fit).
    public init(
        nodes: [String], capacity: RolloutCapacity = RolloutCapacity(), width: Int = LiveProgressSink.terminalWidth(fd: 1),
        line: @escaping @Sendable (RolloutEvent) -> String, write: @escaping @Sendable (String) -> Void,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.nodes = nodes
        self.capacity = capacity
        self.width = max(width, 20)
        self.line = line
        self.write = write
        self.now = now
    }

    /// Prints the event's line above the block and redraws the block.
    public func emit(_ event: RolloutEvent) {
        state.withLock { s in
            s.events.append(event)
            guard !s.stopped else { return write(line(event)) }
            var out = erase(s.drawn) + line(event)
            out += block(&s)
            write(out)
        }
    }

    /// Redraws the block (times in phase, ETA).
    public func refresh() {
        state.withLock { s in
            guard !s.stopped else { return }
            write(erase(s.drawn) + block(&s))
        }
    }

    /// Leaves the last block on screen and prints plain lines from now on.
    public func stop() {
        state.withLock { s in
            s.stopped = true
        }
    }

    /// Refreshes every `interval` until the calling task is cancelled.
    public func runTicker(every interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { break }
            refresh()
        }
    }

    private func block(_ s: inout State) -> String {
        let t = now()
        let lines = LiveProgress.render(LiveProgress.snapshot(events: s.events, nodes: nodes, now: t, capacity: capacity), now: t)
            .map { $0.count > width - 1 ? String($0.prefix(width - 2)) + "…" : $0 }
        s.drawn = lines.count
        return lines.map { "\u{1B}[7m" + $0 + "\u{1B}[0m\n" }.joined()
    }

    private func erase(_ lines: Int) -> String {
        lines == 0 ? "" : "\r\u{1B}[\(lines)A\u{1B}[J"
    }

    /// The width of the terminal on `fd` (TIOCGWINSZ), else `COLUMNS`, else 100.
    public static func terminalWidth(fd: Int32) -> Int {
        var size = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let c = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), c > 0 { return c }
        return 100
    }
}
