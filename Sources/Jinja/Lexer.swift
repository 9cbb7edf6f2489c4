/// A token of Jinja2's default syntax (`{{ }}`, `{% %}`, `{# #}`).
struct Token {
    enum Kind: Equatable {
        case data(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case eof
    }

    var kind: Kind
    var location: SourceLocation

    /// How Jinja2 describes the token in "unexpected …" messages.
    var describe: String {
        switch kind {
        case .data: "template data / text"
        case .variableBegin: "begin of print statement"
        case .variableEnd: "end of print statement"
        case .blockBegin: "begin of statement block"
        case .blockEnd: "end of statement block"
        case .name(let n): n
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .op(let o): o
        case .eof: "end of template"
        }
    }
}

/// Jinja2's lexer with the default `Environment` settings: newlines normalised to `\n`, one trailing newline
/// dropped (`keep_trailing_newline=False`), `-` markers strip whitespace on their side, `+` markers accepted,
/// `trim_blocks` and `lstrip_blocks` off. Mirrors `jinja2/lexer.py` (3.1).
struct Lexer {
    let text: [Unicode.Scalar]
    let file: String
    private var lineStarts: [Int] = [0]
    private var tokens: [Token] = []
    private var pos = 0

    init(source: String, file: String) {
        // lexer.py tokeniter: split on \r\n|\r|\n, drop the last empty line, join with \n.
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = it.next()
        while let c = pending {
            pending = it.next()
            if c == "\r" {
                scalars.append("\n")
                if pending == "\n" { pending = it.next() }
            } else {
                scalars.append(c)
            }
        }
        if scalars.last == "\n" { scalars.removeLast() }
        text = scalars
        self.file = file
        for (i, c) in scalars.enumerated() where c == "\n" { lineStarts.append(i + 1) }
    }

    func location(_ offset: Int) -> SourceLocation {
        var lo = 0
        var hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return SourceLocation(line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    func fail(_ message: String, at offset: Int) -> JinjaError {
        let l = location(offset)
        return JinjaError(.syntax, message, file: file, line: l.line, column: l.column)
    }

    private func at(_ i: Int, _ s: String) -> Bool {
        var j = i
        for u in s.unicodeScalars {
            guard j < text.count, text[j] == u else { return false }
            j += 1
        }
        return true
    }

    private func skipSpace(_ i: Int) -> Int {
        var j = i
        while j < text.count, PyFormat.isSpace(text[j]) { j += 1 }
        return j
    }

    private mutating func emit(_ kind: Token.Kind, _ offset: Int) {
        tokens.append(Token(kind: kind, location: location(offset)))
    }

    private mutating func emitData(_ from: Int, _ to: Int, rstrip: Bool) {
        var end = to
        if rstrip { while end > from, PyFormat.isSpace(text[end - 1]) { end -= 1 } }
        if end > from { emit(.data(String(String.UnicodeScalarView(text[from..<end]))), from) }
    }

    /// The tokens of the whole template, ending with `.eof`.
    mutating func tokenize() throws(JinjaError) -> [Token] {
        while pos < text.count {
            // The next tag opener.
            var start = pos
            var found = false
            while start + 1 < text.count {
                if text[start] == "{", text[start + 1] == "{" || text[start + 1] == "%" || text[start + 1] == "#" {
                    found = true
                    break
                }
                start += 1
            }
            guard found else {
                emitData(pos, text.count, rstrip: false)
                pos = text.count
                break
            }
            let kind = text[start + 1]
            var after = start + 2
            var sign: Unicode.Scalar?
            if after < text.count, text[after] == "-" || text[after] == "+" {
                sign = text[after]
                after += 1
            }
            if kind == "%", let end = rawBegin(after) {
                emitData(pos, start, rstrip: sign == "-")
                pos = end
                try lexRaw(start)
                continue
            }
            emitData(pos, start, rstrip: sign == "-")
            switch kind {
            case "#":
                pos = try skipComment(after, opener: start)
            case "{":
                emit(.variableBegin, start)
                pos = after
                try lexTag(variable: true, opener: start)
            default:
                emit(.blockBegin, start)
                pos = after
                try lexTag(variable: false, opener: start)
            }
        }
        emit(.eof, text.count)
        return tokens
    }

    /// `{%(-|+|)\s*raw\s*(-%}\s*|%})` at the text after the opener: the offset after it.
    private func rawBegin(_ i: Int) -> Int? {
        var j = skipSpace(i)
        guard at(j, "raw") else { return nil }
        j = skipSpace(j + 3)
        if at(j, "-%}") { return skipSpace(j + 3) }
        if at(j, "%}") { return j + 2 }
        return nil
    }

    /// The raw block's text up to `{%(-|+|)\s*endraw\s*(+%}|-%}\s*|%})`.
    private mutating func lexRaw(_ opener: Int) throws(JinjaError) {
        var i = pos
        while i < text.count {
            if text[i] == "{", at(i, "{%") {
                var j = i + 2
                var sign: Unicode.Scalar?
                if j < text.count, text[j] == "-" || text[j] == "+" {
                    sign = text[j]
                    j += 1
                }
                j = skipSpace(j)
                if at(j, "endraw") {
                    j = skipSpace(j + 6)
                    var end: Int?
                    if at(j, "+%}") { end = j + 3 } else if at(j, "-%}") { end = skipSpace(j + 3) } else if at(j, "%}") {
                        end = j + 2
                    }
                    if let end {
                        emitData(pos, i, rstrip: sign == "-")
                        pos = end
                        return
                    }
                }
            }
            i += 1
        }
        throw fail("Missing end of raw directive", at: opener)
    }

    private func skipComment(_ i: Int, opener: Int) throws(JinjaError) -> Int {
        var j = i
        while j < text.count {
            if at(j, "+#}") { return j + 3 }
            if at(j, "-#}") { return skipSpace(j + 3) }
            if at(j, "#}") { return j + 2 }
            j += 1
        }
        throw fail("Missing end of comment tag", at: opener)
    }

    static let operators = [
        "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<",
        "=", ".", ":", "|", ",", ";",
    ]

    private mutating func lexTag(variable: Bool, opener: Int) throws(JinjaError) {
        var balance: [Unicode.Scalar] = []
        while true {
            pos = skipSpace(pos)
            guard pos < text.count else { return }  // the parser reports the missing end
            if balance.isEmpty {
                // The end markers, tried before the operators (`-}}` ends the tag rather than being a minus).
                let ends: [(String, Bool)] =
                    variable ? [("-}}", true), ("}}", false)] : [("+%}", false), ("-%}", true), ("%}", false)]
                if let (marker, strips) = ends.first(where: { at(pos, $0.0) }) {
                    emit(variable ? .variableEnd : .blockEnd, pos)
                    pos += marker.unicodeScalars.count
                    if strips { pos = skipSpace(pos) }
                    return
                }
            }
            let c = text[pos]
            if c.isASCII && c.properties.numericType != nil, let (kind, end) = try number(pos) {
                emit(kind, pos)
                pos = end
            } else if c == "_" || c.properties.isAlphabetic {
                var j = pos + 1
                while j < text.count, text[j] == "_" || text[j].properties.isAlphabetic
                    || (text[j].isASCII && text[j].properties.numericType != nil)
                {
                    j += 1
                }
                emit(.name(String(String.UnicodeScalarView(text[pos..<j]))), pos)
                pos = j
            } else if c == "'" || c == "\"" {
                let (s, end) = try string(pos)
                emit(.string(s), pos)
                pos = end
            } else if let op = Self.operators.first(where: { at(pos, $0) }) {
                let u = op.unicodeScalars.first!
                if op == "(" || op == "[" || op == "{" {
                    balance.append(u == "(" ? ")" : u == "[" ? "]" : "}")
                } else if op == ")" || op == "]" || op == "}" {
                    guard let expected = balance.popLast() else { throw fail("unexpected '\(op)'", at: pos) }
                    if expected != u { throw fail("unexpected '\(op)', expected '\(expected)'", at: pos) }
                }
                emit(.op(op), pos)
                pos += op.unicodeScalars.count
            } else {
                throw fail("unexpected char \(PyFormat.string(String(Character(c)))) at \(pos)", at: pos)
            }
        }
    }

    private func digitRun(_ i: Int, _ ok: (Unicode.Scalar) -> Bool) -> (String, Int) {
        // (\d+_)*\d+ : digits with single underscores between them
        var j = i
        var out = ""
        while j < text.count, ok(text[j]) {
            out.unicodeScalars.append(text[j])
            j += 1
            if j + 1 < text.count, text[j] == "_", ok(text[j + 1]) { j += 1 }
        }
        return (out, j)
    }

    private func number(_ i: Int) throws(JinjaError) -> (Token.Kind, Int)? {
        let isDigit: (Unicode.Scalar) -> Bool = { $0.value >= 48 && $0.value <= 57 }
        // float: (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+\-]?(\d+_)*\d+|\.(\d+_)*\d+)
        if i == 0 || text[i - 1] != "." {
            let (intDigits, j) = digitRun(i, isDigit)
            var k = j
            var frac = ""
            if k + 1 < text.count, text[k] == ".", isDigit(text[k + 1]) {
                (frac, k) = digitRun(k + 1, isDigit)
            }
            var exp = ""
            if k < text.count, text[k] == "e" || text[k] == "E" {
                var m = k + 1
                var sign = ""
                if m < text.count, text[m] == "+" || text[m] == "-" {
                    sign = String(Character(text[m]))
                    m += 1
                }
                if m < text.count, isDigit(text[m]) {
                    let (e, end) = digitRun(m, isDigit)
                    exp = sign + e
                    k = end
                }
            }
            if !frac.isEmpty || !exp.isEmpty {
                let literal = intDigits + (frac.isEmpty ? "" : "." + frac) + (exp.isEmpty ? "" : "e" + exp)
                return (.float(Double(literal) ?? .infinity), k)
            }
        }
        // integer: 0b… | 0o… | 0x… | [1-9](_?\d)* | 0(_?0)*
        if text[i] == "0", i + 1 < text.count {
            let p = text[i + 1]
            let radix: Int? = (p == "b" || p == "B") ? 2 : (p == "o" || p == "O") ? 8 : (p == "x" || p == "X") ? 16 : nil
            if let radix {
                var j = i + 2
                var digits = ""
                while j < text.count {
                    var k = j
                    if text[k] == "_" { k += 1 }
                    guard k < text.count, Int(String(Character(text[k])), radix: radix) != nil else { break }
                    digits.unicodeScalars.append(text[k])
                    j = k + 1
                }
                if !digits.isEmpty {
                    guard let v = Int(digits, radix: radix) else {
                        throw fail("integer literal beyond 64 bits (OverflowError)", at: i)
                    }
                    return (.integer(v), j)
                }
            }
        }
        if text[i] == "0" {
            var j = i + 1
            while j + 1 < text.count || j < text.count {
                if text[j] == "0" { j += 1 } else if text[j] == "_", j + 1 < text.count, text[j + 1] == "0" { j += 2 } else { break }
            }
            return (.integer(0), j)
        }
        let (digits, j) = digitRun(i, isDigit)
        guard let v = Int(digits) else { throw fail("integer literal beyond 64 bits (OverflowError)", at: i) }
        return (.integer(v), j)
    }

    /// A string literal, unescaped as Jinja2 does (Python's `unicode-escape`).
    private func string(_ i: Int) throws(JinjaError) -> (String, Int) {
        let quote = text[i]
        var j = i + 1
        var out = String.UnicodeScalarView()
        while j < text.count {
            let c = text[j]
            if c == quote { return (String(out), j + 1) }
            if c == "\\" {
                guard j + 1 < text.count else { break }
                let e = text[j + 1]
                j += 2
                switch e {
                case "\n": break
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "n": out.append("\n")
                case "r": out.append("\r")
                case "t": out.append("\t")
                case "v": out.append("\u{0B}")
                case "0"..."7":
                    var v = e.value - 48
                    var n = 1
                    while n < 3, j < text.count, text[j].value >= 48, text[j].value <= 55 {
                        v = v * 8 + text[j].value - 48
                        j += 1
                        n += 1
                    }
                    out.append(Unicode.Scalar(v)!)
                case "x", "u", "U":
                    let width = e == "x" ? 2 : e == "u" ? 4 : 8
                    guard j + width <= text.count,
                        let v = UInt32(String(String.UnicodeScalarView(text[j..<(j + width)])), radix: 16),
                        let u = Unicode.Scalar(v)
                    else {
                        throw fail("truncated \\\(e) escape in a string literal", at: j - 2)
                    }
                    out.append(u)
                    j += width
                case "N":
                    throw fail("\\N{…} escapes are not supported by nk3's engine (Unsupported)", at: j - 2)
                default:
                    out.append("\\")
                    out.append(e)
                }
                continue
            }
            out.append(c)
            j += 1
        }
        throw fail("unexpected char \(PyFormat.string(String(Character(quote)))) at \(i)", at: i)
    }
}
