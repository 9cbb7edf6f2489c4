import Foundation

/// Python's `str()`, `repr()` and `%`-formatting, so that printed values match Jinja2 byte for byte.
enum PyFormat {
    /// `str(value)`: what `{{ value }}` prints.
    static func str(_ v: JinjaValue) throws(JinjaError) -> String {
        switch v {
        case .undefined: return ""
        case .string(let s), .markup(let s): return s
        default: return try repr(v)
        }
    }

    /// `repr(value)`.
    static func repr(_ v: JinjaValue) throws(JinjaError) -> String {
        switch v {
        case .undefined: return "Undefined"
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .float(let d): return float(d)
        case .string(let s): return string(s)
        case .markup(let s): return "Markup(\(string(s)))"
        case .list(let a): return "[" + (try a.map(repr)).joined(separator: ", ") + "]"
        case .tuple(let a):
            if a.count == 1 { return "(" + (try repr(a[0])) + ",)" }
            return "(" + (try a.map(repr)).joined(separator: ", ") + ")"
        case .dict(let d):
            var parts: [String] = []
            for (k, val) in zip(d.keys, d.values) { parts.append(try repr(k) + ": " + repr(val)) }
            return "{" + parts.joined(separator: ", ") + "}"
        case .callable(let c):
            throw JinjaError(.unsupported, "printing the function '\(c.name)' (Python prints its memory address)")
        case .object(let o):
            if let r = o.reprText { return r }
            throw JinjaError(.unsupported, "printing a '\(o.typeName)' object (Python prints its memory address)")
        }
    }

    /// Python's float repr: the shortest digits that round-trip, fixed notation for 1e-4 <= |x| < 1e16.
    static func float(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        let (digits, exp) = shortestDigits(abs(d))
        let sign = d < 0 ? "-" : ""
        if exp >= -4 && exp < 16 {
            if exp >= 0 {
                let intCount = exp + 1
                let intPart = digits.count >= intCount
                    ? String(digits.prefix(intCount)) : digits + String(repeating: "0", count: intCount - digits.count)
                let frac = digits.count > intCount ? String(digits.dropFirst(intCount)) : "0"
                return sign + intPart + "." + frac
            }
            return sign + "0." + String(repeating: "0", count: -exp - 1) + digits
        }
        let mant = digits.count > 1 ? String(digits.prefix(1)) + "." + String(digits.dropFirst()) : digits
        let e = abs(exp)
        return sign + mant + "e" + (exp < 0 ? "-" : "+") + (e < 10 ? "0" : "") + String(e)
    }

    /// Shortest round-trip decimal digits (no leading/trailing zeros) and the decimal exponent of the first.
    static func shortestDigits(_ d: Double) -> (String, Int) {
        let s = d.description
        var mantissa = Substring(s)
        var exp = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = s[..<e]
            exp = Int(s[s.index(after: e)...]) ?? 0
        }
        let point = mantissa.firstIndex(of: ".").map { mantissa.distance(from: mantissa.startIndex, to: $0) }
            ?? mantissa.count
        var digits = Array(mantissa.filter { $0 != "." })
        var first = exp + point - 1
        while digits.first == "0" && digits.count > 1 {
            digits.removeFirst()
            first -= 1
        }
        while digits.last == "0" && digits.count > 1 { digits.removeLast() }
        return (String(digits), first)
    }

    /// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
    static func string(_ s: String) -> String {
        let quote: Unicode.Scalar = (s.unicodeScalars.contains("'") && !s.unicodeScalars.contains("\"")) ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default:
                if u == quote {
                    out.append("\\")
                    out.append(u)
                } else if !isPrintable(u) {
                    let hex = String(u.value, radix: 16)
                    let (prefix, width) = u.value < 0x100 ? ("\\x", 2) : u.value < 0x10000 ? ("\\u", 4) : ("\\U", 8)
                    out.append(contentsOf: (prefix + String(repeating: "0", count: width - hex.count) + hex).unicodeScalars)
                } else {
                    out.append(u)
                }
            }
        }
        out.append(quote)
        return String(out)
    }

    /// Python's `str.isprintable` for one code point (approximated by Unicode general category: not Other or
    /// Separator other than the ASCII space).
    static func isPrintable(_ u: Unicode.Scalar) -> Bool {
        if u == " " { return true }
        switch u.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator,
            .spaceSeparator:
            return false
        default: return true
        }
    }

    /// Python's `str.isspace` for one code point (what `\s` and `str.strip()` use).
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            true
        default: false
        }
    }

    /// `value % args` for a format string (Python's printf-style formatting).
    static func percent(_ format: String, _ args: JinjaValue) throws(JinjaError) -> String {
        let f = Array(format.unicodeScalars)
        var positional: [JinjaValue]
        let mapping: PyDict?
        switch args {
        case .tuple(let a): positional = a; mapping = nil
        case .dict(let d): positional = [args]; mapping = d
        default: positional = [args]; mapping = nil
        }
        var next = 0
        var usedMapping = false
        var out = String.UnicodeScalarView()
        var i = 0
        func take() throws(JinjaError) -> JinjaValue {
            guard next < positional.count else { throw JinjaError(.type, "not enough arguments for format string") }
            next += 1
            return positional[next - 1]
        }
        while i < f.count {
            if f[i] != "%" {
                out.append(f[i])
                i += 1
                continue
            }
            i += 1
            guard i < f.count else { throw JinjaError(.value, "incomplete format") }
            var value: JinjaValue?
            if f[i] == "(" {
                guard let m = mapping else { throw JinjaError(.type, "format requires a mapping") }
                var depth = 1
                var j = i + 1
                while j < f.count, depth > 0 {
                    if f[j] == "(" { depth += 1 } else if f[j] == ")" { depth -= 1 }
                    j += 1
                }
                guard depth == 0 else { throw JinjaError(.value, "incomplete format key") }
                let key = String(String.UnicodeScalarView(f[(i + 1)..<(j - 1)]))
                guard let v = m.get(key) else { throw JinjaError(.lookup, "KeyError: \(string(key))") }
                value = v
                usedMapping = true
                i = j
            }
            var flags = Set<Unicode.Scalar>()
            while i < f.count, "-+ #0".unicodeScalars.contains(f[i]) {
                flags.insert(f[i])
                i += 1
            }
            func number() throws(JinjaError) -> Int? {
                if i < f.count, f[i] == "*" { throw JinjaError(.unsupported, "'*' width in a % format") }
                var n: Int?
                while i < f.count, let d = Int(String(f[i])), f[i].isASCII {
                    n = (n ?? 0) * 10 + d
                    if n! > 10_000 { throw JinjaError(.unsupported, "a % format width above 10000") }
                    i += 1
                }
                return n
            }
            let width = try number()
            var precision: Int?
            if i < f.count, f[i] == "." {
                i += 1
                precision = try number() ?? 0
            }
            while i < f.count, "hlL".unicodeScalars.contains(f[i]) { i += 1 }
            guard i < f.count else { throw JinjaError(.value, "incomplete format") }
            let conv = f[i]
            i += 1
            if conv == "%" {
                out.append("%")
                continue
            }
            let arg: JinjaValue
            if let value { arg = value } else { arg = try take() }
            let body = try convert(arg, conv, flags: flags, precision: precision)
            out.append(contentsOf: pad(body, width: width, flags: flags, numeric: !"srac".unicodeScalars.contains(conv))
                .unicodeScalars)
        }
        if mapping == nil && next < positional.count {
            throw JinjaError(.type, "not all arguments converted during string formatting")
        }
        _ = usedMapping
        return String(out)
    }

    static func pad(_ s: String, width: Int?, flags: Set<Unicode.Scalar>, numeric: Bool) -> String {
        guard let width, s.unicodeScalars.count < width else { return s }
        let n = width - s.unicodeScalars.count
        if flags.contains("-") { return s + String(repeating: " ", count: n) }
        if flags.contains("0") && numeric {
            var body = Substring(s)
            var sign = ""
            if let c = body.first, c == "-" || c == "+" || c == " " {
                sign = String(c)
                body = body.dropFirst()
            }
            if body.hasPrefix("0x") || body.hasPrefix("0X") || body.hasPrefix("0o") {
                sign += body.prefix(2)
                body = body.dropFirst(2)
            }
            return sign + String(repeating: "0", count: n) + body
        }
        return String(repeating: " ", count: n) + s
    }

    static func convert(
        _ arg: JinjaValue, _ conv: Unicode.Scalar, flags: Set<Unicode.Scalar>, precision: Int?
    ) throws(JinjaError) -> String {
        func signed(_ s: String, negative: Bool) -> String {
            if negative { return "-" + s }
            if flags.contains("+") { return "+" + s }
            if flags.contains(" ") { return " " + s }
            return s
        }
        switch conv {
        case "s":
            let s = try str(arg)
            return precision.map { String(String.UnicodeScalarView(s.unicodeScalars.prefix($0))) } ?? s
        case "r", "a":
            let s = try repr(arg)
            return precision.map { String(String.UnicodeScalarView(s.unicodeScalars.prefix($0))) } ?? s
        case "d", "i", "u":
            let i: Int
            switch arg {
            case .bool, .int: i = arg.intValue!
            case .float(let d):
                guard d.isFinite, let t = Int(exactly: d.rounded(.towardZero)) else {
                    throw JinjaError(.overflow, "cannot convert float \(float(d)) to integer")
                }
                i = t
            default: throw JinjaError(.type, "%\(conv) format: a real number is required, not \(arg.typeName)")
            }
            return signed(String(i.magnitude), negative: i < 0)
        case "x", "X", "o":
            guard let i = arg.intValue else {
                throw JinjaError(.type, "%\(conv) format: an integer is required, not \(arg.typeName)")
            }
            var s = String(i.magnitude, radix: conv == "o" ? 8 : 16, uppercase: conv == "X")
            if flags.contains("#") { s = (conv == "o" ? "0o" : conv == "x" ? "0x" : "0X") + s }
            return signed(s, negative: i < 0)
        case "f", "F", "e", "E", "g", "G":
            guard let d = arg.numberValue else {
                throw JinjaError(.type, "must be real number, not \(arg.typeName)")
            }
            if d.isNaN || d.isInfinite {
                let s = d.isNaN ? "nan" : "inf"
                return signed(conv.properties.isUppercase ? s.uppercased() : s, negative: d < 0)
            }
            let p = min(precision ?? 6, 1000)
            let alt = flags.contains("#") ? "#" : ""
            let s = String(format: "%\(alt).\(p)\(Character(conv))", abs(d))
            return signed(s, negative: d.sign == .minus)
        case "c":
            if let i = arg.intValue, let u = Unicode.Scalar(UInt32(clamping: max(0, i))) { return String(Character(u)) }
            if let s = arg.stringValue, s.unicodeScalars.count == 1 { return s }
            throw JinjaError(.type, "%c requires an int or a unicode character")
        default:
            throw JinjaError(.value, "unsupported format character '\(conv)' (0x\(String(conv.value, radix: 16)))")
        }
    }
}
