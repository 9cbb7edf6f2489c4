extension Unicode.Scalar {
    /// Foundation's `CharacterSet.whitespaces`: general category Zs, and tab.
    public var isHorizontalWhitespace: Bool {
        self == "\t" || properties.generalCategory == .spaceSeparator
    }

    /// Foundation's `CharacterSet.whitespacesAndNewlines`: general category Z*, U+0009–U+000D and U+0085.
    public var isWhitespaceOrNewline: Bool {
        switch value {
        case 0x09...0x0D, 0x85: return true
        default:
            switch properties.generalCategory {
            case .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
            default: return false
            }
        }
    }
}

extension StringProtocol {
    /// The string without leading and trailing scalars for which `trim` holds (what Foundation's
    /// `trimmingCharacters(in:)` does for a character set; FoundationEssentials has no `CharacterSet`).
    public func trimming(where trim: (Unicode.Scalar) -> Bool) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !trim($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !trim($0) })!
        return String(String.UnicodeScalarView(scalars[first...last]))
    }

    /// The string without leading and trailing whitespace and newlines.
    public func trimmingWhitespaceAndNewlines() -> String { trimming(where: \.isWhitespaceOrNewline) }
}
