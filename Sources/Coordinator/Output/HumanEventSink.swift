import Foundation

/// Prints events as the Python nk3 did ("X is reachable", "Rebooting X", "ceph state is HEALTH_OK"), one per
/// line, with ANSI colours only when writing to a terminal and `NO_COLOR` is unset (https://no-color.org).
///
/// Failures go to the error writer (stderr), in red; everything else to the output writer.
public struct HumanEventSink: RolloutEventSink {
    private let out: @Sendable (String) -> Void
    private let err: @Sendable (String) -> Void
    /// Whether ANSI colour codes are written.
    public let useColor: Bool

    /// A sink writing to arbitrary writers (tests, files).
    public init(useColor: Bool, out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void) {
        self.useColor = useColor
        self.out = out
        self.err = err
    }

    /// A sink on stdout/stderr; colour decided by `shouldUseColor`.
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment) -> HumanEventSink {
        let stdout = FileDescriptorWriter.standardOutput
        let stderr = FileDescriptorWriter.standardError
        return HumanEventSink(
            useColor: shouldUseColor(isTerminal: stdout.isTerminal, environment: environment),
            out: { stdout.write($0) }, err: { stderr.write($0) })
    }

    /// Colour only on a terminal, and never when `NO_COLOR` is set to a non-empty value (no-color.org), or
    /// when `TERM` is `dumb`.
    public static func shouldUseColor(isTerminal: Bool, environment: [String: String]) -> Bool {
        guard isTerminal else { return false }
        if let v = environment["NO_COLOR"], !v.isEmpty { return false }
        if environment["TERM"] == "dumb" { return false }
        return true
    }

    /// Prints the event's line (or lines, for a diff).
    public func emit(_ event: RolloutEvent) {
        let text = render(event)
        if event.status == .failed { err(text) } else { out(text) }
    }

    /// The exact text written for an event, newline included.
    public func render(_ event: RolloutEvent) -> String {
        if event.status == .diff {
            return event.message.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                guard useColor else { return String(line) }
                if line.hasPrefix("+++") || line.hasPrefix("---") { return ANSI.bold + line + ANSI.reset }
                if line.hasPrefix("+") { return ANSI.green + line + ANSI.reset }
                if line.hasPrefix("-") { return ANSI.red + line + ANSI.reset }
                if line.hasPrefix("@@") { return ANSI.cyan + line + ANSI.reset }
                return String(line)
            }.joined(separator: "\n") + "\n"
        }
        guard useColor, let colour = Self.colour(for: event.status) else { return event.message + "\n" }
        return colour + event.message + ANSI.reset + "\n"
    }

    static func colour(for status: RolloutEventStatus) -> String? {
        switch status {
        case .failed: return ANSI.red
        case .warning, .waiting: return ANSI.yellow
        case .ok: return ANSI.green
        case .started, .skipped, .info, .diff: return nil
        }
    }

    enum ANSI {
        static let red = "\u{1B}[31m"
        static let green = "\u{1B}[32m"
        static let yellow = "\u{1B}[33m"
        static let cyan = "\u{1B}[36m"
        static let bold = "\u{1B}[1m"
        static let reset = "\u{1B}[0m"
    }
}
