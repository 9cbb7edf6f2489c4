/// Jinja2's built-in tests (`jinja2/tests.py` 3.1), by name.
enum TestFunctions {
    typealias Test = @Sendable (_ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ ev: Evaluator)
        throws(JinjaError) -> Bool

    static func one(_ name: String, _ f: @escaping @Sendable (JinjaValue) throws(JinjaError) -> Bool) -> Test {
        { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind(name, a, k, [])
            return try f(v)
        }
    }

    static func compare(_ name: String, _ op: CompareOp) -> Test {
        { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind(name, a, k, ["other"], required: 1)
            return try Operators.compare(op, v, p[0]!)
        }
    }

    static func integer(_ v: JinjaValue, _ what: String) throws(JinjaError) -> Int {
        switch v {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        case .undefined(let hint): throw JinjaError(.undefined, hint)
        default: throw JinjaError(.type, "\(what): unsupported operand type for %: '\(v.typeName)' and 'int'")
        }
    }

    /// `str.islower()` / `str.isupper()`: at least one cased character and no cased character of the other case.
    static func caseTest(_ s: String, upper: Bool) -> Bool {
        var cased = false
        for c in s.unicodeScalars {
            if upper ? c.properties.isLowercase : c.properties.isUppercase || c.properties.generalCategory == .titlecaseLetter {
                return false
            }
            if upper ? c.properties.isUppercase : c.properties.isLowercase { cased = true }
        }
        return cased
    }

    static let table: [String: Test] = {
        var t: [String: Test] = [
            "defined": one("defined") { !$0.isUndefined },
            "undefined": one("undefined") { $0.isUndefined },
            "none": one("none") { $0.isNone },
            "boolean": one("boolean") { if case .bool = $0 { true } else { false } },
            "false": one("false") { if case .bool(false) = $0 { true } else { false } },
            "true": one("true") { if case .bool(true) = $0 { true } else { false } },
            "integer": one("integer") { if case .int = $0 { true } else { false } },
            "float": one("float") { if case .float = $0 { true } else { false } },
            "number": one("number") { $0.numberValue != nil },
            "string": one("string") { $0.stringValue != nil },
            "mapping": one("mapping") { if case .dict = $0 { true } else { false } },
            "sequence": one("sequence") { v in
                switch v {
                case .string, .markup, .list, .tuple, .dict: true
                default: false
                }
            },
            "iterable": one("iterable") { v in
                switch v {
                case .string, .markup, .list, .tuple, .dict, .undefined: true
                case .object(let o): o.attributes["__iter__"] != nil
                default: false
                }
            },
            "callable": one("callable") { v in
                switch v {
                case .callable: true
                case .object(let o): o.attributes["__call__"] != nil
                default: false
                }
            },
            "escaped": one("escaped") { $0.isMarkup },
            "lower": one("lower") { v throws(JinjaError) in caseTest(try PyFormat.str(v), upper: false) },
            "upper": one("upper") { v throws(JinjaError) in caseTest(try PyFormat.str(v), upper: true) },
            "odd": one("odd") { v throws(JinjaError) in try integer(v, "odd") % 2 != 0 },
            "even": one("even") { v throws(JinjaError) in try integer(v, "even") % 2 == 0 },
            "divisibleby": { v, a, k, _ throws(JinjaError) in
                let p = try Binder.bind("divisibleby", a, k, ["num"], required: 1)
                let r = try Operators.binary(.mod, v, p[0]!)
                return Operators.equal(r, .int(0))
            },
            "sameas": { v, a, k, _ throws(JinjaError) in
                let p = try Binder.bind("sameas", a, k, ["other"], required: 1)
                return identical(v, p[0]!)
            },
            "in": { v, a, k, _ throws(JinjaError) in
                let p = try Binder.bind("in", a, k, ["seq"], required: 1)
                return try Operators.contains(p[0]!, v)
            },
            "filter": one("filter") { v in v.stringValue.map { Filters.table[$0] != nil } ?? false },
        ]
        for (names, op) in [
            (["eq", "==", "equalto"], CompareOp.eq), (["ne", "!="], .ne), (["lt", "<", "lessthan"], .lt),
            (["le", "<="], .le), (["gt", ">", "greaterthan"], .gt), (["ge", ">="], .ge),
        ] {
            for n in names { t[n] = compare(n, op) }
        }
        let known = Set(t.keys).union(["test"])
        t["test"] = one("test") { v in v.stringValue.map { known.contains($0) } ?? false }
        return t
    }()

    /// Python's `is` for the values where identity is observable: None, True/False, small ints are shared.
    static func identical(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.undefined, .undefined): return false
        case (.int(let x), .int(let y)): return x == y && x >= -5 && x <= 256
        case (.callable(let x), .callable(let y)): return x === y
        case (.object(let x), .object(let y)): return x === y
        default: return false
        }
    }
}
