import Foundation
import Synchronization

/// Receives rollout events as they happen. Implementations must be safe to call from any task.
public protocol RolloutEventSink: Sendable {
    /// Handles one event (prints it, writes it as JSON, records it).
    func emit(_ event: RolloutEvent)
}

/// Output format chosen with `--output`.
public enum RolloutOutputFormat: String, Sendable, Hashable, CaseIterable {
    /// The Python tool's lines, coloured on a terminal.
    case human
    /// One JSON object per line (`--output json`).
    case json
}

/// Writes text to a file descriptor (stdout, stderr), one write per call.
public struct FileDescriptorWriter: Sendable {
    /// The descriptor written to.
    public let fd: Int32

    /// Writes to `fd` (1 = stdout, 2 = stderr).
    public init(fd: Int32) { self.fd = fd }

    /// Standard output.
    public static let standardOutput = FileDescriptorWriter(fd: 1)
    /// Standard error.
    public static let standardError = FileDescriptorWriter(fd: 2)

    /// Writes the whole string; errors (a closed pipe) are ignored so output never takes a rollout down.
    public func write(_ text: String) {
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
        try? handle.write(contentsOf: Data(text.utf8))
    }

    /// Whether the descriptor is a terminal.
    public var isTerminal: Bool { isatty(fd) == 1 }
}

/// Keeps every event in memory (tests, and callers that want a transcript).
public final class CollectingEventSink: RolloutEventSink {
    private let storage = Mutex<[RolloutEvent]>([])

    /// Makes an empty sink.
    public init() {}

    /// Records the event.
    public func emit(_ event: RolloutEvent) {
        storage.withLock { $0.append(event) }
    }

    /// The events so far, in emission order.
    public var events: [RolloutEvent] { storage.withLock { $0 } }

    /// Just the messages, in order.
    public var messages: [String] { events.map(\.message) }
}

/// Sends every event to several sinks (e.g. the terminal and a log file).
public struct FanOutEventSink: RolloutEventSink {
    /// The sinks, called in order.
    public let sinks: [any RolloutEventSink]
    /// Fans out to `sinks`.
    public init(_ sinks: [any RolloutEventSink]) { self.sinks = sinks }
    /// Emits to every sink.
    public func emit(_ event: RolloutEvent) { for s in sinks { s.emit(event) } }
}
