import Foundation

/// Jinja2's built-in filters (`jinja2/filters.py` 3.1), by name. A filter Jinja2 has but nk3 does not implement
/// is registered as an `Unsupported` error, so a template never renders differently from Jinja2.
enum Filters {
    typealias Filter = @Sendable (_ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ ev: Evaluator)
        throws(JinjaError) -> JinjaValue

    static func unsupported(_ name: String) -> Filter {
        { _, _, _, _ throws(JinjaError) in
            throw JinjaError(.unsupported, "the '\(name)' filter is not implemented by nk3's engine")
        }
    }

    static let table: [String: Filter] = {
        var t: [String: Filter] = [:]
        for n in ["filesizeformat", "random", "striptags", "urlize", "xmlattr"] { t[n] = unsupported(n) }
        for (k, v) in simple { t[k] = v }
        for (k, v) in sequences { t[k] = v }
        t["d"] = t["default"]
        t["e"] = t["escape"]
        t["count"] = t["length"]
        return t
    }()

    /// `soft_str`: a string stays itself (Markup too), anything else is `str()`ed.
    static func softStr(_ v: JinjaValue) throws(JinjaError) -> JinjaValue {
        switch v {
        case .string, .markup: v
        default: .string(try PyFormat.str(v))
        }
    }

    static func textOf(_ v: JinjaValue) throws(JinjaError) -> String { try PyFormat.str(v) }

    /// `markupsafe.escape`'s replacements.
    static func escapeText(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case ">": out += "&gt;"
            case "<": out += "&lt;"
            case "'": out += "&#39;"
            case "\"": out += "&#34;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `Markup % args` escapes the arguments.
    static func escapeArgs(_ v: JinjaValue) -> JinjaValue {
        func esc(_ x: JinjaValue) -> JinjaValue {
            switch x {
            case .string(let s): return .markup(escapeText(s))
            case .markup, .int, .float, .bool, .none: return x
            default: return .markup(escapeText((try? PyFormat.str(x)) ?? ""))
            }
        }
        switch v {
        case .tuple(let a): return .tuple(a.map(esc))
        case .dict(let d):
            var out = PyDict()
            for (k, x) in zip(d.keys, d.values) { try? out.set(k, esc(x)) }
            return .dict(out)
        default: return esc(v)
        }
    }

    static func wrap(_ like: JinjaValue, _ s: String) -> JinjaValue { like.isMarkup ? .markup(s) : .string(s) }

    /// `str.center`, `ljust`, `rjust`, `zfill` with Python's padding rules.
    static func justify(_ s: String, _ width: Int, _ fill: String, mode: String) throws(JinjaError) -> String {
        let n = s.unicodeScalars.count
        guard width > n else { return s }
        if width > Operators.maxSize { throw JinjaError(.overflow, "width too large (MemoryError)") }
        let marg = width - n
        func pad(_ k: Int) -> String { String(repeating: fill, count: k) }
        switch mode {
        case "ljust": return s + pad(marg)
        case "rjust": return pad(marg) + s
        case "zfill":
            if let f = s.unicodeScalars.first, f == "+" || f == "-" {
                return String(Character(f)) + pad(marg) + Text.string(s.unicodeScalars.dropFirst())
            }
            return pad(marg) + s
        default:
            let left = marg / 2 + (marg & width & 1)
            return pad(left) + s + pad(marg - left)
        }
    }

    static let simple: [String: Filter] = [
        "abs": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("abs", a, k, [])
            switch v {
            case .bool(let b): return .int(b ? 1 : 0)
            case .int(let i):
                guard i != .min else { throw Operators.overflow("abs") }
                return .int(abs(i))
            case .float(let d): return .float(abs(d))
            case .undefined(let hint): throw JinjaError(.undefined, hint)
            default: throw JinjaError(.type, "bad operand type for abs(): '\(v.typeName)'")
            }
        },
        "attr": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("attr", a, k, ["name"], required: 1)
            let name = try textOf(p[0]!)
            switch v {
            case .undefined(let hint): throw JinjaError(.undefined, hint)
            case .dict:
                return Access.dictMethods.contains(name) ? Methods.bound(v, name) : Access.noAttribute(v, name)
            default: return try Access.attribute(v, name)
            }
        },
        "capitalize": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("capitalize", a, k, [])
            let s = try softStr(v)
            return wrap(s, Text.capitalize(s.stringValue!))
        },
        "center": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("center", a, k, ["width"])
            let s = try softStr(v)
            let w = try Binder.int(p[0], "width") ?? 80
            return wrap(s, try justify(s.stringValue!, w, " ", mode: "center"))
        },
        "default": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("default", a, k, ["default_value", "boolean"])
            if v.isUndefined || (p[1]?.truthy == true && !v.truthy) { return p[0] ?? .string("") }
            return v
        },
        "escape": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("escape", a, k, [])
            if v.isMarkup { return v }
            return .markup(escapeText(try textOf(v)))
        },
        "forceescape": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("forceescape", a, k, [])
            return .markup(escapeText(try textOf(v)))
        },
        "safe": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("safe", a, k, [])
            return v.isMarkup ? v : .markup(try textOf(v))
        },
        "float": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("float", a, k, ["default"])
            let fallback = p[0] ?? .float(0)
            switch v {
            case .bool, .int, .float: return .float(v.numberValue!)
            case .string(let s), .markup(let s): return parseFloat(s).map { .float($0) } ?? fallback
            default: return fallback
            }
        },
        "format": { v, a, k, _ throws(JinjaError) in
            if !a.isEmpty && !k.isEmpty {
                throw JinjaError(.filterArgument, "can't handle positional and keyword arguments at the same time")
            }
            var d = PyDict()
            for (key, x) in k { try d.set(.string(key), x) }
            let args: JinjaValue = k.isEmpty ? .tuple(a) : .dict(d)
            let s = try softStr(v)
            if s.isMarkup { return .markup(try PyFormat.percent(s.stringValue!, escapeArgs(args))) }
            return .string(try PyFormat.percent(s.stringValue!, args))
        },
        "indent": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("indent", a, k, ["width", "first", "blank"])
            if case .undefined(let hint) = v { throw JinjaError(.undefined, hint) }
            guard let s = v.stringValue else {
                throw JinjaError(.type, "unsupported operand type(s) for +=: '\(v.typeName)' and 'str'")
            }
            var indention = "    "
            if let w = p[0] {
                if let ws = w.stringValue { indention = ws } else if let n = w.intValue {
                    indention = String(repeating: " ", count: max(0, min(n, Operators.maxSize)))
                } else {
                    throw JinjaError(.type, "can't multiply sequence by non-int of type '\(w.typeName)'")
                }
            }
            let lines = Text.splitlines(s + "\n")
            var rv: String
            if p[2]?.truthy == true {
                rv = lines.joined(separator: "\n" + indention)
            } else {
                rv = lines.first ?? ""
                if lines.count > 1 {
                    rv += "\n" + lines.dropFirst().map { $0.isEmpty ? $0 : indention + $0 }.joined(separator: "\n")
                }
            }
            if p[1]?.truthy == true { rv = indention + rv }
            return wrap(v, rv)
        },
        "int": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("int", a, k, ["default", "base"])
            let fallback = p[0] ?? .int(0)
            let base = try Binder.int(p[1], "base") ?? 10
            switch v {
            case .bool, .int: return .int(v.intValue!)
            case .float(let d):
                guard d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) else { return fallback }
                return .int(i)
            case .string(let s), .markup(let s):
                if let i = parseInt(s, base: base) { return .int(i) }
                if let d = parseFloat(s), d.isFinite, let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
                return fallback
            default: return fallback
            }
        },
        "lower": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("lower", a, k, [])
            let s = try softStr(v)
            return wrap(s, Text.lower(s.stringValue!))
        },
        "upper": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("upper", a, k, [])
            let s = try softStr(v)
            return wrap(s, Text.upper(s.stringValue!))
        },
        "pprint": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("pprint", a, k, [])
            let r = try PyFormat.repr(sortedDicts(v))
            if r.unicodeScalars.count > 80 {
                throw JinjaError(.unsupported, "pprint of a value whose repr is longer than 80 characters (pprint wraps it)")
            }
            return .string(r)
        },
        "replace": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("replace", a, k, ["old", "new", "count"], required: 2)
            return .string(
                Text.replace(try textOf(v), try textOf(p[0]!), try textOf(p[1]!), count: try Binder.int(p[2], "count") ?? -1))
        },
        "round": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("round", a, k, ["precision", "method"])
            let precision = try Binder.int(p[0], "precision") ?? 0
            let method = try Binder.string(p[1], "method") ?? "common"
            guard ["common", "ceil", "floor"].contains(method) else {
                throw JinjaError(.filterArgument, "method must be common, ceil or floor")
            }
            guard let x = v.numberValue else {
                if case .undefined(let hint) = v { throw JinjaError(.undefined, hint) }
                throw JinjaError(.type, "type \(v.typeName) doesn't define __round__ method")
            }
            if method == "common" {
                if let i = v.intValue {
                    guard precision < 0 else { return .int(i) }
                    throw JinjaError(.unsupported, "round() of an integer to a negative precision")
                }
                return .float(roundHalfEven(x, precision))
            }
            let scale = Foundation.pow(10.0, Double(precision))
            let r = method == "ceil" ? (x * scale).rounded(.up) : (x * scale).rounded(.down)
            return .float(r / scale)
        },
        "string": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("string", a, k, [])
            return try softStr(v)
        },
        "title": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("title", a, k, [])
            return .string(jinjaTitle(try textOf(v)))
        },
        "trim": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("trim", a, k, ["chars"])
            let s = try softStr(v)
            return wrap(s, Text.strip(s.stringValue!, try Binder.string(p[0], "chars")))
        },
        "truncate": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("truncate", a, k, ["length", "killwords", "end", "leeway"])
            guard let s = v.stringValue else {
                throw JinjaError(.unsupported, "truncate of a \(v.typeName) (only strings are implemented)")
            }
            let length = try Binder.int(p[0], "length") ?? 255
            let end = try Binder.string(p[2], "end") ?? "..."
            let leeway = try Binder.int(p[3], "leeway") ?? 5
            let endLen = end.unicodeScalars.count
            guard length >= endLen else { throw JinjaError(.runtime, "expected length >= \(endLen), got \(length) (AssertionError)") }
            guard leeway >= 0 else { throw JinjaError(.runtime, "expected leeway >= 0, got \(leeway) (AssertionError)") }
            let u = Array(s.unicodeScalars)
            if u.count <= length + leeway { return v }
            let head = Array(u.prefix(max(0, length - endLen)))
            if p[1]?.truthy == true { return .string(Text.string(head) + end) }
            let headText = Text.string(head)
            let cut = headText.utf8.lastIndex(of: UInt8(ascii: " ")).map { String(headText[..<$0]) } ?? headText
            return .string(cut + end)
        },
        "urlencode": { v, a, k, ev throws(JinjaError) in
            _ = try Binder.bind("urlencode", a, k, [])
            switch v {
            case .string(let s), .markup(let s): return .string(urlQuote(s, forQuery: false))
            case .dict(let d):
                return .string(try zip(d.keys, d.values).map { (key, x) throws(JinjaError) in
                    urlQuote(try textOf(key), forQuery: true) + "=" + urlQuote(try textOf(x), forQuery: true)
                }.joined(separator: "&"))
            case .list, .tuple, .object:
                var parts: [String] = []
                for item in try ev.iterate(v) {
                    let pair = try ev.iterate(item)
                    guard pair.count == 2 else { throw JinjaError(.value, "urlencode needs (key, value) pairs") }
                    parts.append(urlQuote(try textOf(pair[0]), forQuery: true) + "=" + urlQuote(try textOf(pair[1]), forQuery: true))
                }
                return .string(parts.joined(separator: "&"))
            default: return .string(urlQuote(try textOf(v), forQuery: false))
            }
        },
        "wordcount": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("wordcount", a, k, [])
            var n = 0
            var inWord = false
            for c in try textOf(v).unicodeScalars {
                let word = c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
                if word && !inWord { n += 1 }
                inWord = word
            }
            return .int(n)
        },
        "wordwrap": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("wordwrap", a, k, ["width", "break_long_words", "wrapstring", "break_on_hyphens"])
            return .string(
                try TextWrap.wordwrap(
                    try textOf(v), width: try Binder.int(p[0], "width") ?? 79, breakLongWords: p[1]?.truthy ?? true,
                    wrapstring: try Binder.string(p[2], "wrapstring") ?? "\n", breakOnHyphens: p[3]?.truthy ?? true))
        },
        "tojson": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("tojson", a, k, ["indent"])
            let json = try JSONDump.dumps(v, indent: try Binder.int(p[0], "indent"))
            return .markup(
                json.replacingOccurrences(of: "<", with: "\\u003c").replacingOccurrences(of: ">", with: "\\u003e")
                    .replacingOccurrences(of: "&", with: "\\u0026").replacingOccurrences(of: "'", with: "\\u0027"))
        },
    ]

    /// Jinja2's `title`: words begin after `-`, whitespace, `(`, `{`, `[`, `<`.
    static func jinjaTitle(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        var atStart = true
        for c in s.unicodeScalars {
            let sep = c == "-" || c == "(" || c == "{" || c == "[" || c == "<" || PyFormat.isSpace(c)
            if sep {
                out.append(c)
                atStart = true
            } else if atStart {
                out.append(contentsOf: c.properties.uppercaseMapping.unicodeScalars)
                atStart = false
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return String(out)
    }

    /// `dict` values with their keys sorted (what `pprint` prints).
    static func sortedDicts(_ v: JinjaValue) throws(JinjaError) -> JinjaValue {
        switch v {
        case .list(let a): return .list(try a.map(sortedDicts))
        case .tuple(let a): return .tuple(try a.map(sortedDicts))
        case .dict(let d):
            let order = try Sorting.sorted(Array(d.keys.indices)) { (i, j) throws(JinjaError) in
                (try Operators.order(d.keys[i], d.keys[j], .lt) ?? 0) < 0
            }
            var out = PyDict()
            for i in order { try out.set(d.keys[i], try sortedDicts(d.values[i])) }
            return .dict(out)
        default: return v
        }
    }

    /// Python's `round(x, n)` for a float: exact value rounded half to even.
    static func roundHalfEven(_ x: Double, _ n: Int) -> Double {
        guard x.isFinite else { return x }
        if n >= 0 {
            if n > 300 { return x }
            return Double(String(format: "%.\(n)f", x)) ?? x
        }
        let scale = Foundation.pow(10.0, Double(-n))
        return (x / scale).rounded(.toNearestOrEven) * scale
    }

    /// Python's `int(s, base)`.
    static func parseInt(_ s: String, base: Int) -> Int? {
        var t = Text.strip(s, nil)
        var negative = false
        if t.hasPrefix("-") || t.hasPrefix("+") {
            negative = t.hasPrefix("-")
            t.removeFirst()
        }
        var b = base
        let lower = t.lowercased()
        for (prefix, pb) in [("0x", 16), ("0o", 8), ("0b", 2)] where lower.hasPrefix(prefix) && (base == pb || base == 0) {
            t.removeFirst(2)
            if t.hasPrefix("_") { t.removeFirst() }
            b = pb
        }
        if b == 0 { b = 10 }
        guard b >= 2 && b <= 36, !t.isEmpty, !t.hasPrefix("_"), !t.hasSuffix("_"), !t.contains("__") else { return nil }
        guard let v = Int(t.replacingOccurrences(of: "_", with: ""), radix: b) else { return nil }
        return negative ? -v : v
    }

    /// Python's `float(s)`.
    static func parseFloat(_ s: String) -> Double? {
        let t = Text.strip(s, nil).lowercased()
        switch t {
        case "inf", "+inf", "infinity", "+infinity": return .infinity
        case "-inf", "-infinity": return -.infinity
        case "nan", "+nan", "-nan": return .nan
        default: break
        }
        guard !t.isEmpty, !t.hasPrefix("_"), !t.hasSuffix("_"), !t.contains("__"),
            t.unicodeScalars.allSatisfy({ "0123456789.eE+-_".unicodeScalars.contains($0) }),
            t.contains(where: { $0.isNumber })
        else { return nil }
        return Double(t.replacingOccurrences(of: "_", with: ""))
    }

    /// `urllib.parse.quote_from_bytes` as Jinja2's `url_quote` calls it.
    static func urlQuote(_ s: String, forQuery: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if (b < 0x80 && (c.isLetter || c.isNumber)) || "_.-~".utf8.contains(b) || (!forQuery && b == UInt8(ascii: "/")) {
                out.append(c)
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return forQuery ? out.replacingOccurrences(of: "%20", with: "+") : out
    }
}
