/// A bound on how deeply a YAML document nests, checked before Yams reads it.
///
/// Yams builds its node tree recursively (`Parser.loadNode` → `loadMapping`/`loadSequence` → `loadNode`, Yams
/// `Sources/Yams/Parser.swift`), one set of stack frames per level, while libyaml underneath keeps its own state
/// stack on the heap. A few kilobytes of `{` or `- ` therefore overflow the thread's stack and kill the process
/// (found by fuzzing: `Fuzz/regressions/inventory/deep-flow-nesting.yaml`, 1,746 nested `{` in 1.7 KB). Inventories
/// and kubeconfigs nest a handful of levels; this refuses anything past `limit`, with the line where it happens.
///
/// The count is deliberately simple and errs towards counting too much, never too little:
/// - flow collections: every `[`/`{` outside quoted scalars and comments opens a level and `]`/`}` closes one,
///   over the whole document (a flow collection may span lines);
/// - block collections: the indentation of a line's content, in columns, plus each `- `, `? ` or `: ` indicator
///   that starts the content (`- - - x` nests three sequences on one line), one level each.
///
/// Quoted scalars follow YAML 1.2 §7.3: a `'` or `"` opens one only where a scalar can start (line start, after a
/// space or one of `[{,:`), `''` is an escaped quote inside single quotes and `\` escapes inside double quotes; a
/// `#` starts a comment only at line start or after whitespace.
///
/// This is a lexer's approximation, not YAML's grammar: it stops the inputs the fuzzer found and ordinary
/// mistakes, but a file crafted to be misread (an apostrophe inside a plain scalar, brackets inside a block
/// scalar) can still get past it. Inventories and kubeconfigs are the operator's own files, so this guards the
/// operator's process against accidents, not against someone who can already write them.
public enum YAMLNesting {
    /// Where a document nests too deeply.
    public struct TooDeep: Error, Sendable, Hashable, CustomStringConvertible {
        /// 1-based line where the limit is passed.
        public var line: Int
        /// The limit.
        public var limit: Int

        public var description: String {
            "line \(line): the YAML nests more than \(limit) levels deep (collections inside collections), which nk3 "
                + "does not read"
        }
    }

    /// The default limit: far beyond any inventory or kubeconfig, far below what overflows a thread's stack.
    public static let defaultLimit = 64
    /// Indentation in columns allowed before a line counts as too deep (two columns per level is usual).
    static let indentColumnsPerLevel = 2

    /// Throws `TooDeep` when `text` nests more than `limit` levels.
    public static func check(_ text: String, limit: Int = defaultLimit) throws(TooDeep) {
        var flow = 0
        var line = 1
        var quote: UInt8?  // the open quote character, if inside a quoted scalar
        var atLineStart = true
        var indent = 0
        var previous: UInt8 = 0x0A
        var indicators = 0
        var inComment = false
        var bytes = Array(text.utf8)
        bytes.append(0x0A)
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            defer { i += 1 }
            if c == 0x0A {
                line += 1
                atLineStart = true
                indent = 0
                indicators = 0
                inComment = false
                previous = c
                continue
            }
            if inComment { continue }
            if let q = quote {
                if q == 0x27, c == 0x27 {  // '
                    if i + 1 < bytes.count, bytes[i + 1] == 0x27 { i += 1 } else { quote = nil }
                } else if q == 0x22 {  // "
                    if c == 0x5C { i += 1 } else if c == 0x22 { quote = nil }
                }
                previous = c
                continue
            }
            if atLineStart {
                if c == 0x20 {
                    indent += 1
                    previous = c
                    continue
                }
                atLineStart = false
                if indent / indentColumnsPerLevel > limit { throw TooDeep(line: line, limit: limit) }
            }
            let next = i + 1 < bytes.count ? bytes[i + 1] : 0x0A
            let scalarCanStart = [0x0A, 0x20, 0x09, 0x5B, 0x7B, 0x2C, 0x3A].contains(previous)
            let startsBlock = (next == 0x20 || next == 0x0A) && (previous == 0x20 || previous == 0x0A)
            switch c {
            case 0x23 where previous == 0x20 || previous == 0x09 || previous == 0x0A:  // #
                inComment = true
            case 0x27 where scalarCanStart, 0x22 where scalarCanStart:  // ' "
                quote = c
            case 0x5B, 0x7B:  // [ {
                flow += 1
                if flow > limit { throw TooDeep(line: line, limit: limit) }
            case 0x5D, 0x7D:  // ] }
                flow = max(0, flow - 1)
            case 0x2D where startsBlock, 0x3F where startsBlock, 0x3A where startsBlock:
                // `- `, `? `, `: ` starting a nested block collection on this line.
                indicators += 1
                if indent / indentColumnsPerLevel + indicators > limit { throw TooDeep(line: line, limit: limit) }
            default:
                break
            }
            previous = c
        }
    }
}
