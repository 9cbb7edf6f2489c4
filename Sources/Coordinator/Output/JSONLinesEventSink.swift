import Foundation

/// `--output json`: every event as one JSON object on its own line (JSON Lines), keys sorted, timestamps in
/// RFC 3339 UTC with milliseconds. Messages with newlines (diffs) stay on one line: JSON escapes them.
///
/// `{"message":"Draining n1","node":"n1","phase":"drain","status":"started","timestamp":"2024-05-01T12:00:00.000Z"}`
public struct JSONLinesEventSink: RolloutEventSink {
    private let out: @Sendable (String) -> Void

    /// A sink writing lines to `out`.
    public init(out: @escaping @Sendable (String) -> Void) { self.out = out }

    /// A sink on stdout.
    public static func standard() -> JSONLinesEventSink {
        let stdout = FileDescriptorWriter.standardOutput
        return JSONLinesEventSink(out: { stdout.write($0) })
    }

    /// Writes the event's line.
    public func emit(_ event: RolloutEvent) { out(Self.line(for: event)) }

    /// The exact line written for an event, newline included.
    public static func line(for event: RolloutEvent) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, enc in
            var c = enc.singleValueContainer()
            try c.encode(RolloutTimestamp.format(date))
        }
        guard let data = try? encoder.encode(event), let text = String(data: data, encoding: .utf8) else {
            // Unreachable for these plain value types; still one valid JSON object per line.
            return #"{"message":"unencodable event","status":"failed"}"# + "\n"
        }
        return text + "\n"
    }
}

/// RFC 3339 UTC timestamps with milliseconds, as written in JSON events.
public enum RolloutTimestamp {
    /// Formats `date`, e.g. `2024-05-01T12:00:00.123Z`.
    public static func format(_ date: Date) -> String {
        var ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        ms -= seconds * 1000
        let t = time_t(seconds)
        var parts = tm()
        var copy = t
        gmtime_r(&copy, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ms))
    }
}
