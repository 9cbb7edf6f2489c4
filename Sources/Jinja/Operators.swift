import Foundation

/// Python's operators on template values. Integers are 64-bit: a result beyond is an `OverflowError` (Python
/// would give a big integer), never a wrapped value.
enum Operators {
    /// Results larger than this (strings, lists built by `*`) are refused as Python's `MemoryError` would be
    /// long before; it keeps a template from exhausting memory.
    static let maxSize = 50_000_000

    static func overflow(_ what: String) -> JinjaError {
        JinjaError(.overflow, "integer result of \(what) does not fit in 64 bits (nk3's engine has no big integers)")
    }

    static func undefinedCheck(_ vs: JinjaValue...) throws(JinjaError) {
        for v in vs { if case .undefined(let hint) = v { throw JinjaError(.undefined, hint) } }
    }

    static func negate(_ v: JinjaValue) throws(JinjaError) -> JinjaValue {
        try undefinedCheck(v)
        switch v {
        case .bool(let b): return .int(b ? -1 : 0)
        case .int(let i):
            guard i != .min else { throw overflow("-") }
            return .int(-i)
        case .float(let d): return .float(-d)
        default: throw JinjaError(.type, "bad operand type for unary -: '\(v.typeName)'")
        }
    }

    static func unsupported(_ op: BinaryOp, _ a: JinjaValue, _ b: JinjaValue) -> JinjaError {
        JinjaError(.type, "unsupported operand type(s) for \(op.rawValue): '\(a.typeName)' and '\(b.typeName)'")
    }

    static func binary(_ op: BinaryOp, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> JinjaValue {
        if op == .mod, let s = a.stringValue {
            try undefinedCheck(b)
            if case .markup = a { return .markup(try PyFormat.percent(s, Filters.escapeArgs(b))) }
            return .string(try PyFormat.percent(s, b))
        }
        try undefinedCheck(a, b)
        if let x = a.intValue, let y = b.intValue { return try intOp(op, x, y) }
        if let x = a.numberValue, let y = b.numberValue { return try floatOp(op, x, y) }
        switch (op, a, b) {
        case (.add, .markup(let x), _):
            guard let y = b.stringValue else { throw JinjaError(.type, "can only concatenate str (not \"\(b.typeName)\") to str") }
            return .markup(x + (b.isMarkup ? y : Filters.escapeText(y)))
        case (.add, .string(let x), .markup(let y)): return .markup(Filters.escapeText(x) + y)
        case (.add, .string(let x), .string(let y)): return .string(x + y)
        case (.add, .string, _): throw JinjaError(.type, "can only concatenate str (not \"\(b.typeName)\") to str")
        case (.add, .list(let x), .list(let y)): return .list(x + y)
        case (.add, .list, _): throw JinjaError(.type, "can only concatenate list (not \"\(b.typeName)\") to list")
        case (.add, .tuple(let x), .tuple(let y)): return .tuple(x + y)
        case (.add, .tuple, _): throw JinjaError(.type, "can only concatenate tuple (not \"\(b.typeName)\") to tuple")
        case (.mul, _, _):
            if let n = b.intValue, let r = try repeatValue(a, n) { return r }
            if let n = a.intValue, let r = try repeatValue(b, n) { return r }
            if a.stringValue != nil || b.stringValue != nil {
                let other = a.stringValue != nil ? b : a
                throw JinjaError(.type, "can't multiply sequence by non-int of type '\(other.typeName)'")
            }
        default: break
        }
        throw unsupported(op, a, b)
    }

    static func repeatValue(_ v: JinjaValue, _ n: Int) throws(JinjaError) -> JinjaValue? {
        let count = max(0, n)
        func check(_ size: Int) throws(JinjaError) {
            let (total, o) = size.multipliedReportingOverflow(by: count)
            if o || total > maxSize { throw JinjaError(.overflow, "repetition result too large (MemoryError)") }
        }
        switch v {
        case .string(let s):
            try check(s.utf8.count)
            return .string(String(repeating: s, count: count))
        case .markup(let s):
            try check(s.utf8.count)
            return .markup(String(repeating: s, count: count))
        case .list(let a):
            try check(a.count)
            return .list(Array([[JinjaValue]](repeating: a, count: count).joined()))
        case .tuple(let a):
            try check(a.count)
            return .tuple(Array([[JinjaValue]](repeating: a, count: count).joined()))
        default: return nil
        }
    }

    static func intOp(_ op: BinaryOp, _ x: Int, _ y: Int) throws(JinjaError) -> JinjaValue {
        switch op {
        case .add:
            let (r, o) = x.addingReportingOverflow(y)
            if o { throw overflow("+") }
            return .int(r)
        case .sub:
            let (r, o) = x.subtractingReportingOverflow(y)
            if o { throw overflow("-") }
            return .int(r)
        case .mul:
            let (r, o) = x.multipliedReportingOverflow(by: y)
            if o { throw overflow("*") }
            return .int(r)
        case .div:
            guard y != 0 else { throw JinjaError(.zeroDivision, "division by zero") }
            return .float(Double(x) / Double(y))
        case .floorDiv:
            guard y != 0 else { throw JinjaError(.zeroDivision, "integer division or modulo by zero") }
            if x == .min && y == -1 { throw overflow("//") }
            let q = x / y
            return .int((x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q)
        case .mod:
            guard y != 0 else { throw JinjaError(.zeroDivision, "integer modulo by zero") }
            if y == -1 { return .int(0) }
            let r = x % y
            return .int((r != 0 && (r < 0) != (y < 0)) ? r + y : r)
        case .pow:
            if y < 0 {
                guard x != 0 else { throw JinjaError(.zeroDivision, "0.0 cannot be raised to a negative power") }
                return .float(Foundation.pow(Double(x), Double(y)))
            }
            var result = 1
            var base = x
            var e = y
            while e > 0 {
                if e & 1 == 1 {
                    let (r, o) = result.multipliedReportingOverflow(by: base)
                    if o { throw overflow("**") }
                    result = r
                }
                e >>= 1
                if e > 0 {
                    let (b2, o) = base.multipliedReportingOverflow(by: base)
                    if o { throw overflow("**") }
                    base = b2
                }
            }
            return .int(result)
        }
    }

    static func floatOp(_ op: BinaryOp, _ x: Double, _ y: Double) throws(JinjaError) -> JinjaValue {
        switch op {
        case .add: return .float(x + y)
        case .sub: return .float(x - y)
        case .mul: return .float(x * y)
        case .div:
            guard y != 0 else { throw JinjaError(.zeroDivision, "float division by zero") }
            return .float(x / y)
        case .floorDiv:
            guard y != 0 else { throw JinjaError(.zeroDivision, "float floor division by zero") }
            return .float(pyFloatMod(x, y).div)
        case .mod:
            guard y != 0 else { throw JinjaError(.zeroDivision, "float modulo") }
            return .float(pyFloatMod(x, y).mod)
        case .pow:
            if x == 0 && y < 0 { throw JinjaError(.zeroDivision, "0.0 cannot be raised to a negative power") }
            if x < 0 && y.rounded() != y {
                throw JinjaError(.unsupported, "a negative number to a fractional power (Python gives a complex number)")
            }
            let r = Foundation.pow(x, y)
            if r.isInfinite && x.isFinite && y.isFinite { throw JinjaError(.overflow, "(34, 'Numerical result out of range')") }
            return .float(r)
        }
    }

    /// CPython's `float_divmod`.
    static func pyFloatMod(_ vx: Double, _ wx: Double) -> (div: Double, mod: Double) {
        var mod = fmod(vx, wx)
        var div = (vx - mod) / wx
        if mod != 0 {
            if (wx < 0) != (mod < 0) {
                mod += wx
                div -= 1
            }
        } else {
            mod = wx < 0 ? -0.0 : 0.0
        }
        var floordiv: Double
        if div != 0 {
            floordiv = div.rounded(.down)
            if div - floordiv > 0.5 { floordiv += 1 }
        } else {
            floordiv = vx / wx < 0 ? -0.0 : 0.0
        }
        return (floordiv, mod)
    }

    // MARK: - Comparison

    static func compare(_ op: CompareOp, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> Bool {
        switch op {
        case .eq: return equal(a, b)
        case .ne: return !equal(a, b)
        case .in: return try contains(b, a)
        case .notIn: return !(try contains(b, a))
        case .lt, .le, .gt, .ge:
            try undefinedCheck(a, b)
            guard let c = try order(a, b, op) else { return false }
            switch op {
            case .lt: return c < 0
            case .le: return c <= 0
            case .gt: return c > 0
            default: return c >= 0
            }
        }
    }

    /// `item in container`.
    static func contains(_ container: JinjaValue, _ item: JinjaValue) throws(JinjaError) -> Bool {
        switch container {
        case .string(let s), .markup(let s):
            guard let sub = item.stringValue else {
                if case .undefined(let hint) = item { throw JinjaError(.undefined, hint) }
                throw JinjaError(.type, "'in <string>' requires string as left operand, not \(item.typeName)")
            }
            return Text.find(Array(s.utf8), Array(sub.utf8), from: 0) != nil
        case .list(let a), .tuple(let a): return a.contains { equal($0, item) }
        case .dict(let d):
            _ = try HashKey(item)
            return d.get(item) != nil
        case .undefined: return false
        case .object(let o):
            if case .list(let a)? = o.attributes["__iter__"] {
                if o.typeName == "dict_keys" { _ = try HashKey(item) }
                return a.contains { equal($0, item) }
            }
            throw JinjaError(.type, "argument of type '\(container.typeName)' is not iterable")
        default: throw JinjaError(.type, "argument of type '\(container.typeName)' is not iterable")
        }
    }

    /// Python's `==`.
    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined): return true
        case (.undefined, _), (_, .undefined): return false
        case (.none, .none): return true
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            for (k, v) in zip(x.keys, x.values) {
                guard let w = y.get(k), equal(v, w) else { return false }
            }
            return true
        case (.callable(let x), .callable(let y)): return x === y
        case (.object(let x), .object(let y)): return x === y
        default:
            if let x = a.intValue, let y = b.intValue { return x == y }
            if let x = a.numberValue, let y = b.numberValue { return x == y }
            if let x = a.stringValue, let y = b.stringValue { return x.utf8.elementsEqual(y.utf8) }
            return false
        }
    }

    /// Python's ordering: -1, 0, 1; nil when unordered (NaN).
    static func order(_ a: JinjaValue, _ b: JinjaValue, _ op: CompareOp) throws(JinjaError) -> Int? {
        if let x = a.intValue, let y = b.intValue { return x < y ? -1 : x > y ? 1 : 0 }
        if let x = a.numberValue, let y = b.numberValue {
            if x.isNaN || y.isNaN { return nil }
            return x < y ? -1 : x > y ? 1 : 0
        }
        if let x = a.stringValue, let y = b.stringValue {
            return Text.compare(x, y)
        }
        switch (a, b) {
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            for (p, q) in zip(x, y) where !equal(p, q) { return try order(p, q, op) }
            return x.count < y.count ? -1 : x.count > y.count ? 1 : 0
        default:
            throw JinjaError(
                .type, "'\(op.rawValue)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }
}

extension JinjaValue {
    var isMarkup: Bool { if case .markup = self { true } else { false } }
}
