import Foundation
import Stencil

/// Marks a Stencil context level in which a `{{ … }}` is being printed: values that print differently in Python
/// than they test in `if` (None, ordered maps) resolve by it.
let printingMarker = "__nk3_printing__"

/// Python's `None` from a YAML null: prints "None" (as Jinja2 does), tests false in `{% if %}`.
/// (A missing key stays Stencil's nil and prints "", as Jinja2's default Undefined does.)
struct PyNone: Resolvable {
    func resolve(_ context: Context) throws -> Any? {
        context[printingMarker] != nil ? "None" : nil
    }
}

/// An insertion-ordered mapping, as PyYAML gives Jinja2: attribute lookup by key, iterates its keys in written
/// order, tests false when empty, prints as Python's dict repr.
struct PyDict: DynamicMemberLookup, Resolvable {
    let entries: [(String, Any)]

    subscript(dynamicMember member: String) -> Any? {
        entries.first { $0.0 == member }?.1
    }

    func resolve(_ context: Context) throws -> Any? {
        context[printingMarker] != nil ? PythonValues.repr(self) : entries.map { $0.0 as Any }
    }
}

/// Python's `str()` and `repr()` for the values a template can reach, so output matches Jinja2 byte for byte.
enum PythonValues {
    /// `str(value)`: what Jinja2 prints for `{{ value }}`.
    static func str(_ value: Any?) -> String {
        guard let value else { return "" }
        switch value {
        case let s as String: return s
        case let s as Substring: return String(s)
        default: return repr(value)
        }
    }

    /// `repr(value)`: how Python prints a value inside a list or dict.
    static func repr(_ value: Any?) -> String {
        guard let value else { return "None" }
        switch value {
        case is PyNone: return "None"
        case let b as Bool: return b ? "True" : "False"
        case let i as Int: return String(i)
        case let d as Double: return float(d)
        case let s as String: return string(s)
        case let s as Substring: return string(String(s))
        case let d as PyDict:
            return "{" + d.entries.map { "\(string($0.0)): \(repr($0.1))" }.joined(separator: ", ") + "}"
        case let a as [Any]: return "[" + a.map { repr($0) }.joined(separator: ", ") + "]"
        case let a as [Any?]: return "[" + a.map { repr($0) }.joined(separator: ", ") + "]"
        case let d as [String: Any]:
            return "{" + d.keys.sorted().map { "\(string($0)): \(repr(d[$0]))" }.joined(separator: ", ") + "}"
        case let c as CustomStringConvertible: return c.description
        default: return String(describing: value)
        }
    }

    /// Python's float repr: shortest round-trip digits, like Swift's, with Python's spelling of specials.
    static func float(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        var s = d.description  // "1.0", "1e-05", "1e+16", "0.1"
        if let e = s.firstIndex(of: "e") {
            // Python writes at least two exponent digits: 1e-05, 1e+16 (Swift: 1e-05, 1e+16 too).
            let mantissa = s[..<e]
            var exp = String(s[s.index(after: e)...])
            let sign = exp.first == "-" ? "-" : "+"
            exp = exp.trimmingCharacters(in: CharacterSet(charactersIn: "+-"))
            if exp.count < 2 { exp = "0" + exp }
            let m = mantissa.hasSuffix(".0") ? String(mantissa.dropLast(2)) : String(mantissa)
            s = m + "e" + sign + exp
        }
        return s
    }

    /// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
    static func string(_ s: String) -> String {
        let quote: Character = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote {
                    out += "\\\(quote)"
                } else if u.value < 0x20 || u.value == 0x7F {
                    out += String(format: "\\x%02x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out.append(quote)
        return out
    }

    /// The Stencil context value for an inventory value.
    static func context(_ v: InventoryValue) -> Any {
        switch v {
        case .string(let s): s
        case .int(let i): i
        case .float(let d): d
        case .bool(let b): b
        case .null: PyNone()
        case .list(let items): items.map { context($0) }
        case .map(let entries): PyDict(entries: entries.map { ($0.key, context($0.value)) })
        }
    }
}
