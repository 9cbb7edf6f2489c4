/// Content rules for the text fields of a signed command: a valid signature says who sent a field, not that it
/// is safe to write into a file or a log. A line break in a channel URL adds a line to `/root/.nix-channels`; one
/// in a reason forges a journal line. File contents are exempt: they are configuration, line breaks and all.
public enum SignedText {
    /// Longest reason (reboot, rollback) accepted, in UTF-8 bytes.
    public static let maxReasonBytes = 512
    /// Longest channel URL accepted, in UTF-8 bytes.
    public static let maxURLBytes = 2048

    /// Why `text` is refused as the value of `field`, or nil. Refuses Unicode control characters (C0, DEL, C1),
    /// line and paragraph separators (U+2028, U+2029) and the bidirectional overrides and isolates (U+202A–U+202E,
    /// U+2066–U+2069, which reorder what a reader of a log sees); with `allowSpaces: false`, any whitespace; and
    /// more than `maxBytes` UTF-8 bytes.
    public static func problem(_ text: String, field: String, maxBytes: Int, allowSpaces: Bool = true) -> String? {
        if text.utf8.count > maxBytes {
            return "\(field) is \(text.utf8.count) bytes long; at most \(maxBytes) are accepted"
        }
        for scalar in text.unicodeScalars {
            if isRefused(scalar) || (!allowSpaces && scalar.properties.isWhitespace) {
                return "\(field) '\(quoted(text))' contains the character U+\(hex(scalar)), which has no place there"
            }
        }
        return nil
    }

    /// Whether `text` is a portable name: 1…`maxBytes` bytes of `[A-Za-z0-9._-]`, not starting with `-` (a name
    /// such as `-rf` reads as an option to any command it is passed to). What a file in a bundle or a channel
    /// release's version field may be called.
    public static func isPortableName(_ text: String, maxBytes: Int) -> Bool {
        guard !text.isEmpty, text.utf8.count <= maxBytes, !text.hasPrefix("-") else { return false }
        return text.unicodeScalars.allSatisfy { s in
            (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "." || s == "_"
                || s == "-"
        }
    }

    /// `text` with refused characters shown as `\u{XXXX}` (safe to put in an error message or a log), at most
    /// 200 characters of it.
    public static func quoted(_ text: String) -> String {
        var out = ""
        for (i, scalar) in text.unicodeScalars.enumerated() {
            if i == 200 {
                out += "…"
                break
            }
            out += isRefused(scalar) ? "\\u{\(hex(scalar))}" : String(scalar)
        }
        return out
    }

    private static func isRefused(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    private static func hex(_ s: Unicode.Scalar) -> String {
        let digits = String(s.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

extension Command {
    /// The first content problem of the command's fields (see `SignedText`), or nil. An apply's bundle is checked
    /// by `ApplyBundle.validationProblem()`.
    public func contentProblem() -> String? {
        switch self {
        case .apply(let bundle): bundle.validationProblem()
        case .confirm: nil
        case .reboot(let r): SignedText.problem(r.reason, field: "reboot reason", maxBytes: SignedText.maxReasonBytes)
        case .rollback(let r): SignedText.problem(r.reason, field: "rollback reason", maxBytes: SignedText.maxReasonBytes)
        case .stageAgentBinary(let b): b.validationProblem
        }
    }
}
