/// Python `str` operations by code point (Swift's `String` compares and searches by grapheme cluster and
/// canonical equivalence; Python does neither).
enum Text {
    static func scalars(_ s: String) -> [Unicode.Scalar] { Array(s.unicodeScalars) }

    static func string(_ u: some Sequence<Unicode.Scalar>) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: u)
        return String(v)
    }

    /// Code-point length (`len(s)`).
    static func length(_ s: String) -> Int { s.unicodeScalars.count }

    /// Code-point order, as Python compares strings.
    static func compare(_ a: String, _ b: String) -> Int {
        var i = a.unicodeScalars.makeIterator()
        var j = b.unicodeScalars.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case (let x?, let y?): if x != y { return x.value < y.value ? -1 : 1 }
            }
        }
    }

    /// The byte offset of `needle` in `haystack` at or after `from` (UTF-8 substring = code-point substring).
    static func find(_ haystack: [UInt8], _ needle: [UInt8], from: Int) -> Int? {
        if needle.isEmpty { return from <= haystack.count ? from : nil }
        guard haystack.count >= needle.count else { return nil }
        var i = from
        while i + needle.count <= haystack.count {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// `s.replace(old, new, count)`.
    static func replace(_ s: String, _ old: String, _ new: String, count: Int = -1) -> String {
        if old.isEmpty {
            var out = String.UnicodeScalarView()
            var n = 0
            for u in s.unicodeScalars {
                if count < 0 || n < count {
                    out.append(contentsOf: new.unicodeScalars)
                    n += 1
                }
                out.append(u)
            }
            if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        let h = Array(s.utf8)
        let o = Array(old.utf8)
        var out: [UInt8] = []
        var i = 0
        var n = 0
        while count < 0 || n < count, let at = find(h, o, from: i) {
            out += h[i..<at]
            out += new.utf8
            i = at + o.count
            n += 1
        }
        out += h[i...]
        return String(decoding: out, as: UTF8.self)
    }

    /// `s.count(sub)`.
    static func count(_ s: String, _ sub: String) -> Int {
        if sub.isEmpty { return length(s) + 1 }
        let h = Array(s.utf8)
        let o = Array(sub.utf8)
        var i = 0
        var n = 0
        while let at = find(h, o, from: i) {
            n += 1
            i = at + o.count
        }
        return n
    }

    /// `s.split(sep, maxsplit)`; nil `sep` splits on runs of whitespace.
    static func split(_ s: String, _ sep: String?, max: Int = -1) -> [String] {
        if let sep {
            let h = Array(s.utf8)
            let o = Array(sep.utf8)
            var parts: [String] = []
            var i = 0
            while max < 0 || parts.count < max, let at = find(h, o, from: i) {
                parts.append(String(decoding: h[i..<at], as: UTF8.self))
                i = at + o.count
            }
            parts.append(String(decoding: h[i...], as: UTF8.self))
            return parts
        }
        var parts: [String] = []
        var cur = String.UnicodeScalarView()
        var inWord = false
        let u = Array(s.unicodeScalars)
        var k = 0
        while k < u.count {
            let c = u[k]
            if PyFormat.isSpace(c) {
                if inWord {
                    parts.append(String(cur))
                    cur = String.UnicodeScalarView()
                    inWord = false
                }
            } else {
                if !inWord && max >= 0 && parts.count >= max {
                    parts.append(string(strip(u[k...]) ))
                    return parts
                }
                inWord = true
                cur.append(c)
            }
            k += 1
        }
        if inWord { parts.append(String(cur)) }
        return parts
    }

    static func strip(_ u: ArraySlice<Unicode.Scalar>) -> ArraySlice<Unicode.Scalar> {
        var s = u
        while let l = s.last, PyFormat.isSpace(l) { s = s.dropLast() }
        return s
    }

    /// `s.strip(chars)`, `lstrip`, `rstrip`.
    static func strip(_ s: String, _ chars: String?, left: Bool = true, right: Bool = true) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let isStrip: (Unicode.Scalar) -> Bool = { c in set.map { $0.contains(c) } ?? PyFormat.isSpace(c) }
        var u = ArraySlice(s.unicodeScalars)
        if left { while let f = u.first, isStrip(f) { u = u.dropFirst() } }
        if right { while let l = u.last, isStrip(l) { u = u.dropLast() } }
        return string(u)
    }

    /// Python's `str.splitlines()` line boundaries (keepends false).
    static func splitlines(_ s: String) -> [String] {
        var lines: [String] = []
        var cur = String.UnicodeScalarView()
        let u = Array(s.unicodeScalars)
        var i = 0
        while i < u.count {
            let c = u[i]
            switch c.value {
            case 0x0A, 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029, 0x0D:
                lines.append(String(cur))
                cur = String.UnicodeScalarView()
                if c == "\r", i + 1 < u.count, u[i + 1] == "\n" { i += 1 }
            default:
                cur.append(c)
            }
            i += 1
        }
        if !cur.isEmpty { lines.append(String(cur)) }
        return lines
    }

    /// `str.upper()`, `str.lower()` (Swift's full Unicode case mappings, as Python's).
    static func upper(_ s: String) -> String { s.uppercased() }
    static func lower(_ s: String) -> String { s.lowercased() }

    /// `str.capitalize()`: first code point title-cased, the rest lower-cased.
    static func capitalize(_ s: String) -> String {
        guard let f = s.unicodeScalars.first else { return s }
        return f.properties.titlecaseMapping + lower(string(s.unicodeScalars.dropFirst()))
    }

    static func isCased(_ c: Unicode.Scalar) -> Bool { c.properties.isCased }
}
