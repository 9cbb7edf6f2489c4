/// A value inside a template, with Python's semantics (Jinja2 evaluates Python objects).
public enum JinjaValue {
    /// `jinja2.Undefined`: empty when printed, false, empty when iterated; an error when an attribute is taken or
    /// it takes part in arithmetic. `hint` is Jinja2's message for that error.
    case undefined(hint: String)
    /// Python's `None`.
    case none
    /// `True` / `False`.
    case bool(Bool)
    /// A Python `int` (64 bits here: beyond is an `OverflowError`).
    case int(Int)
    /// A Python `float`.
    case float(Double)
    /// A Python `str`.
    case string(String)
    /// `markupsafe.Markup`: an escaped string (from `escape`, `tojson`).
    case markup(String)
    /// A Python `list`.
    case list([JinjaValue])
    /// A Python `tuple`.
    case tuple([JinjaValue])
    /// A Python `dict` (insertion-ordered).
    case dict(PyDict)
    /// A function: macro, global, bound method.
    case callable(JinjaCallable)
    /// An object with attributes only (loop, imported template module, namespace, cycler).
    case object(JinjaObject)

    /// An undefined variable named `name` (Jinja2: "'name' is undefined").
    static func missing(_ name: String) -> JinjaValue { .undefined(hint: "'\(name)' is undefined") }

    /// Python's truth value.
    var truthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .float(let d): d != 0
        case .string(let s), .markup(let s): !s.isEmpty
        case .list(let a), .tuple(let a): !a.isEmpty
        case .dict(let d): d.count > 0
        case .callable: true
        case .object(let o):
            // Python: an object with __len__ is false when empty (dict views, range); others are true.
            if case .int(let n)? = o.attributes["__len__"] { n != 0 } else { true }
        }
    }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    /// Python's type name (`type(x).__name__`), used in error messages as Python words them.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .float: "float"
        case .string: "str"
        case .markup: "Markup"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .callable(let c): c.typeName
        case .object(let o): o.typeName
        }
    }

    /// Jinja2's `object_type_repr`: "'dict object'", "None".
    var objectTypeRepr: String {
        if case .none = self { return "None" }
        return "'\(typeName) object'"
    }

    /// The text of a `str` or `Markup`.
    var stringValue: String? {
        switch self {
        case .string(let s), .markup(let s): s
        default: nil
        }
    }

    /// A number as Double (bool, int, float).
    var numberValue: Double? {
        switch self {
        case .bool(let b): b ? 1 : 0
        case .int(let i): Double(i)
        case .float(let d): d
        default: nil
        }
    }

    /// An integer (bool or int).
    var intValue: Int? {
        switch self {
        case .bool(let b): b ? 1 : 0
        case .int(let i): i
        default: nil
        }
    }
}

/// An insertion-ordered dictionary with Python's key equality (`1 == 1.0 == True`, strings by code point).
public struct PyDict {
    private(set) var keys: [JinjaValue] = []
    private(set) var values: [JinjaValue] = []
    private var index: [HashKey: Int] = [:]

    /// An empty dict.
    public init() {}

    /// A dict of string keys in the given order (a later duplicate key replaces the value in place).
    public init(_ entries: [(String, JinjaValue)]) {
        keys.reserveCapacity(entries.count)
        values.reserveCapacity(entries.count)
        for (k, v) in entries { try? set(.string(k), v) }
    }

    var count: Int { keys.count }

    func get(_ key: JinjaValue) -> JinjaValue? {
        guard let h = try? HashKey(key), let i = index[h] else { return nil }
        return values[i]
    }

    func get(_ key: String) -> JinjaValue? {
        guard let i = index[.string(Array(key.utf8))] else { return nil }
        return values[i]
    }

    mutating func set(_ key: JinjaValue, _ value: JinjaValue) throws(JinjaError) {
        let h = try HashKey(key)
        if let i = index[h] {
            values[i] = value
        } else {
            index[h] = keys.count
            keys.append(key)
            values.append(value)
        }
    }

    var items: [JinjaValue] { zip(keys, values).map { .tuple([$0, $1]) } }
}

/// A dict key normalised as Python hashes it.
enum HashKey: Hashable {
    case none
    case int(Int)
    case float(UInt64)
    case string([UInt8])
    case tuple([HashKey])

    init(_ v: JinjaValue) throws(JinjaError) {
        switch v {
        case .none: self = .none
        case .bool(let b): self = .int(b ? 1 : 0)
        case .int(let i): self = .int(i)
        case .float(let d):
            if d.rounded() == d, let i = Int(exactly: d) { self = .int(i) } else { self = .float(d.bitPattern) }
        case .string(let s), .markup(let s): self = .string(Array(s.utf8))
        case .tuple(let items):
            var out: [HashKey] = []
            for i in items { out.append(try HashKey(i)) }
            self = .tuple(out)
        default: throw JinjaError(.type, "unhashable type: '\(v.typeName)'")
        }
    }
}

/// A function value.
public final class JinjaCallable {
    let name: String
    let typeName: String
    let call: (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ ev: Evaluator) throws(JinjaError) -> JinjaValue

    init(
        name: String, typeName: String = "function",
        call: @escaping (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ ev: Evaluator) throws(JinjaError)
            -> JinjaValue
    ) {
        self.name = name
        self.typeName = typeName
        self.call = call
    }
}

/// An object with named attributes (loop, imported module, namespace, cycler, joiner).
public final class JinjaObject {
    let typeName: String
    var attributes: [String: JinjaValue]
    /// Whether `set obj.attr = …` may assign (Jinja2's `namespace`).
    let assignable: Bool
    let reprText: String?

    init(typeName: String, attributes: [String: JinjaValue], assignable: Bool = false, reprText: String? = nil) {
        self.typeName = typeName
        self.attributes = attributes
        self.assignable = assignable
        self.reprText = reprText
    }
}

extension JinjaValue {
    /// Makes a value from plain Swift values: String, Int, Double, Bool, nil/NSNull-free optionals, arrays,
    /// `[String: Any]` (keys sorted), `[(String, Any)]` (ordered), or a `JinjaValue`.
    public static func from(_ any: Any?) -> JinjaValue {
        guard let any else { return .none }
        switch any {
        case let v as JinjaValue: return v
        case let s as String: return .string(s)
        case let s as Substring: return .string(String(s))
        case let b as Bool: return .bool(b)
        case let i as Int: return .int(i)
        case let d as Double: return .float(d)
        case let d as [(String, Any)]: return .dict(PyDict(d.map { ($0.0, from($0.1)) }))
        case let a as [Any?]: return .list(a.map(from))
        case let a as [Any]: return .list(a.map(from))
        case let d as [String: Any]: return .dict(PyDict(d.keys.sorted().map { ($0, from(d[$0])) }))
        default: return .string(String(describing: any))
        }
    }
}
