import Foundation
import NK3Common
import Synchronization

/// The event log every rollout leaves behind: the events `--output json` prints, one JSON object per line
/// (JSON Lines, https://jsonlines.org), in `<inventory dir>/.nk3/rollouts/<UTC start time>.jsonl` unless the
/// inventory's `rollout_log_dir` says otherwise. `nk3 report` reads it back.
public enum RolloutLog {
    /// The log directory an inventory in `inventoryDirectory` uses by default.
    public static func defaultDirectory(inventoryDirectory: String) -> String {
        let base = inventoryDirectory.isEmpty ? "." : inventoryDirectory
        return (base as NSString).appendingPathComponent(".nk3/rollouts")
    }

    /// The file name of a log started at `date`: `20240501T120000.123Z.jsonl` (sorts by time, no colons).
    public static func fileName(startedAt date: Date) -> String {
        let iso = RolloutTimestamp.format(date)  // 2024-05-01T12:00:00.123Z
        return iso.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "") + ".jsonl"
    }

    /// The newest `.jsonl` log in `directory` (by name, which sorts by start time), if any.
    public static func newest(in directory: String) -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        guard let last = names.filter({ $0.hasSuffix(".jsonl") }).sorted().last else { return nil }
        return (directory as NSString).appendingPathComponent(last)
    }

    /// Reads a log: every line one event. A torn last line (the coordinator was killed mid-write) is skipped;
    /// any other undecodable line is an error naming its line number.
    public static func read(path: String) throws -> [RolloutEvent] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CoordinatorError(.invalidInput, "cannot read rollout log \(path): \(error.localizedDescription)")
        }
        return try parse(text, name: path)
    }

    /// Decodes log text (see `read`).
    public static func parse(_ text: String, name: String = "log") throws -> [RolloutEvent] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { d in
            let c = try d.singleValueContainer()
            let s = try c.decode(String.self)
            guard let date = parseTimestamp(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an RFC 3339 UTC timestamp: \(s)")
            }
            return date
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var events: [RolloutEvent] = []
        for (i, line) in lines.enumerated() where !line.isEmpty {
            do {
                events.append(try decoder.decode(RolloutEvent.self, from: Data(line.utf8)))
            } catch {
                let isLast = lines[(i + 1)...].allSatisfy(\.isEmpty)
                if isLast && !text.hasSuffix("\n") { break }
                throw CoordinatorError(.invalidInput, "\(name):\(i + 1): not a rollout event: \(error)")
            }
        }
        return events
    }

    /// Parses `RolloutTimestamp.format`'s output (`2024-05-01T12:00:00.123Z`, milliseconds optional).
    public static func parseTimestamp(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}

/// Appends every event to a rollout log file as one JSON line (the same line `--output json` prints), written
/// through at once so a killed coordinator leaves every event before the kill. Opening fails loudly (the
/// caller reports it); a write error later is counted, reported once through `onFirstWriteFailure`, and never
/// stops the rollout.
public final class RolloutLogSink: RolloutEventSink {
    /// The log file.
    public let path: String
    /// The open file and the count of lines that could not be written; one writer at a time.
    private let state: Mutex<(handle: FileHandle, failures: Int)>
    private let onFirstWriteFailure: @Sendable (any Error) -> Void

    /// Creates `directory` (and parents) if needed and a new log file in it named after `startedAt`.
    /// `onFirstWriteFailure` hears the first line that cannot be written (a full disk), once.
    public convenience init(directory: String, startedAt: Date = Date(), onFirstWriteFailure: @escaping @Sendable (any Error) -> Void = { _ in }) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CoordinatorError(.invalidInput, "cannot create the rollout log directory \(directory): \(error.localizedDescription)")
        }
        var name = RolloutLog.fileName(startedAt: startedAt)
        var path = (directory as NSString).appendingPathComponent(name)
        var n = 1
        while FileManager.default.fileExists(atPath: path) {  // two rollouts in one millisecond
            n += 1
            name = RolloutLog.fileName(startedAt: startedAt).replacingOccurrences(of: ".jsonl", with: "-\(n).jsonl")
            path = (directory as NSString).appendingPathComponent(name)
        }
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]),
            let handle = FileHandle(forWritingAtPath: path)
        else {
            throw CoordinatorError(.invalidInput, "cannot create the rollout log \(path)")
        }
        self.init(path: path, handle: handle, onFirstWriteFailure: onFirstWriteFailure)
    }

    /// A sink writing to an open `handle` that stands for `path`.
    init(path: String, handle: FileHandle, onFirstWriteFailure: @escaping @Sendable (any Error) -> Void) {
        self.path = path
        self.state = Mutex((handle, 0))
        self.onFirstWriteFailure = onFirstWriteFailure
    }

    deinit { state.withLock { try? $0.handle.close() } }

    /// Appends the event's JSON line.
    public func emit(_ event: RolloutEvent) {
        let line = JSONLinesEventSink.line(for: event)
        let firstFailure: (any Error)? = state.withLock { s in
            do {
                try s.handle.write(contentsOf: Data(line.utf8))
                return nil
            } catch {
                s.failures += 1
                return s.failures == 1 ? error : nil
            }
        }
        if let firstFailure { onFirstWriteFailure(firstFailure) }
    }

    /// Lines that could not be written (a full disk).
    public var writeFailures: Int { state.withLock { $0.failures } }
}
