/// Python's `textwrap.wrap` as Jinja2's `wordwrap` calls it (`expand_tabs=False`, `replace_whitespace=False`,
/// `drop_whitespace=True`), paragraph by paragraph.
enum TextWrap {
    static func wordwrap(
        _ s: String, width: Int, breakLongWords: Bool, wrapstring: String, breakOnHyphens: Bool
    ) throws(JinjaError) -> String {
        guard width > 0 else { throw JinjaError(.value, "invalid width \(width) (must be > 0)") }
        if breakOnHyphens && s.unicodeScalars.contains("-") {
            throw JinjaError(
                .unsupported, "wordwrap of text containing '-' with break_on_hyphens (textwrap's hyphen rules are not "
                    + "implemented); pass break_on_hyphens=false")
        }
        return Text.splitlines(s).map { wrapParagraph($0, width: width, breakLongWords: breakLongWords).joined(separator: wrapstring) }
            .joined(separator: wrapstring)
    }

    static func chunks(_ s: String) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = []
        var cur: [Unicode.Scalar] = []
        var curSpace: Bool?
        for c in s.unicodeScalars {
            // textwrap's chunks split on ASCII whitespace only (textwrap._whitespace).
            let sp = c == " " || (c.value >= 0x09 && c.value <= 0x0D)
            if let cs = curSpace, cs != sp {
                out.append(cur)
                cur = []
            }
            curSpace = sp
            cur.append(c)
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func isBlank(_ c: [Unicode.Scalar]) -> Bool { c.allSatisfy(PyFormat.isSpace) }

    static func wrapParagraph(_ text: String, width: Int, breakLongWords: Bool) -> [String] {
        var rev = Array(chunks(text).reversed())
        var lines: [String] = []
        while !rev.isEmpty {
            var cur: [[Unicode.Scalar]] = []
            var curLen = 0
            if isBlank(rev.last!) && !lines.isEmpty { rev.removeLast() }
            while let c = rev.last {
                if curLen + c.count <= width {
                    cur.append(c)
                    curLen += c.count
                    rev.removeLast()
                } else {
                    break
                }
            }
            if let c = rev.last, c.count > width {
                let spaceLeft = width < 1 ? 1 : width - curLen
                if breakLongWords {
                    cur.append(Array(c.prefix(spaceLeft)))
                    rev[rev.count - 1] = Array(c.dropFirst(spaceLeft))
                } else if cur.isEmpty {
                    cur.append(rev.removeLast())
                }
            }
            if let last = cur.last, isBlank(last) {
                curLen -= last.count
                cur.removeLast()
            }
            if !cur.isEmpty { lines.append(Text.string(cur.joined())) }
        }
        return lines
    }
}

/// Python's `json.dumps(value, sort_keys=True, indent=…)` (Jinja2's `tojson` policy), ASCII-escaped.
enum JSONDump {
    static func dumps(_ v: JinjaValue, indent: Int?) throws(JinjaError) -> String {
        var out = ""
        try write(v, indent: indent, level: 0, into: &out)
        return out
    }

    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value > 0x7E {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - h.count) + h
    }

    static func key(_ k: JinjaValue) throws(JinjaError) -> String {
        switch k {
        case .string(let s), .markup(let s): return s
        case .int(let i): return String(i)
        case .float(let d): return float(d)
        case .bool(let b): return b ? "true" : "false"
        case .none: return "null"
        default: throw JinjaError(.type, "keys must be str, int, float, bool or None, not \(k.typeName)")
        }
    }

    static func float(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return PyFormat.float(d)
    }

    static func write(_ v: JinjaValue, indent: Int?, level: Int, into out: inout String) throws(JinjaError) {
        let newline = indent.map { "\n" + String(repeating: " ", count: max(0, $0) * (level + 1)) }
        let closing = indent.map { "\n" + String(repeating: " ", count: max(0, $0) * level) }
        let itemSep = indent == nil ? ", " : ","
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .float(let d): out += float(d)
        case .string(let s), .markup(let s): out += string(s)
        case .list(let a), .tuple(let a):
            if a.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, x) in a.enumerated() {
                out += i == 0 ? (newline ?? "") : itemSep + (newline ?? "")
                try write(x, indent: indent, level: level + 1, into: &out)
            }
            out += (closing ?? "") + "]"
        case .dict(let d):
            if d.count == 0 {
                out += "{}"
                return
            }
            var pairs: [(String, JinjaValue, JinjaValue)] = []
            for (k, x) in zip(d.keys, d.values) { pairs.append((try key(k), k, x)) }
            let order = try Sorting.sorted(Array(pairs.indices)) { (i, j) throws(JinjaError) in
                try Filters.less(pairs[i].1, pairs[j].1)
            }
            out += "{"
            for (n, i) in order.enumerated() {
                out += n == 0 ? (newline ?? "") : itemSep + (newline ?? "")
                out += string(pairs[i].0) + ": "
                try write(pairs[i].2, indent: indent, level: level + 1, into: &out)
            }
            out += (closing ?? "") + "}"
        case .undefined: throw JinjaError(.type, "Object of type Undefined is not JSON serializable")
        default: throw JinjaError(.type, "Object of type \(v.typeName) is not JSON serializable")
        }
    }
}
